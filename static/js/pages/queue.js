/** Queue pages: lease the next radiograph (annotate or review queue) and open it. */

import { post } from "../core/api.js";
import { $, armForm } from "../core/dom.js";

const form = $("#queue-form");
// Read with getAttribute: a form's named controls (here "dataset") shadow its own properties.
const nextUrl = form.getAttribute("data-next-url");
const workspaceUrl = form.getAttribute("data-workspace");
const message = $("#queue-message");

async function start(event) {
  if (event) event.preventDefault();
  const body = { dataset: form.elements.dataset ? form.elements.dataset.value : "" };
  if (form.elements.order) {
    body.order = form.elements.order.value;
    sessionStorage.setItem("lungmark:review-order", body.order); // the workspace's "next" keeps it
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const next = await post(nextUrl, body);
    if (!next) {
      message.textContent = "Nothing waits in this queue right now.";
      message.classList.remove("hidden");
      return;
    }
    window.location.assign(workspaceUrl.replace("{id}", next.id));
  } catch (err) {
    message.textContent = err.detail;
    message.classList.remove("hidden");
  } finally {
    button.disabled = false;
  }
}

form.addEventListener("submit", start);
armForm(form);
if (form.elements.order) {
  form.elements.order.addEventListener("change", () => {
    const url = new URL(window.location.href);
    url.searchParams.set("order", form.elements.order.value);
    window.location.assign(url);
  });
}
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !["INPUT", "TEXTAREA", "SELECT", "BUTTON", "A"].includes(event.target.tagName)) start(event);
});
