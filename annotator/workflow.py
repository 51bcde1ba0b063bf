"""The annotation workflow as data: the one place that says what may happen to a radiograph.

- ``TRANSITIONS``: every step (action, from, to), the capability it needs (a permission of
  ``annotator.permissions``; ``SYSTEM`` for pre-annotation, which no person does) and what it does
  to the lease. Edits that keep the state (``save``, ``edit_regions``) are steps too, from a state to
  itself: who may edit what in which state is read from the same table.
- ``QUEUES``: the states each work queue hands out, in the order it hands them out.

Everything else asks this module: the services (``annotator.services.workflow.transition_apply``
is the one function that changes a radiograph's state), the pre-annotation worker, the queue
indexes, the radiograph detail answer (``editable``, ``actions``) and so the pages, and the tests,
which are generated from ``TRANSITIONS``. Pure data and functions: no database access here.
"""
from __future__ import annotations

from dataclasses import dataclass

from .constants import State

# The capability of the pre-annotation worker: no user has it.
SYSTEM = "system"


@dataclass(frozen=True)
class Transition:
    """One step: ``action`` takes a radiograph from ``source`` to ``target`` for a holder of ``capability``.

    ``lease`` is what the step does to the radiograph's lease: ``take`` (the actor holds it, or keeps
    holding it), ``renew`` (the actor's own lease runs on; a free radiograph stays free), ``release``
    (the radiograph goes back to a queue or out of all of them) or ``keep``. Whatever it does, no
    person's step is taken while a colleague holds a live lease.
    ``event`` is the action name recorded in the radiograph's history.
    """

    action: str
    source: State
    target: State
    capability: str
    lease: str
    event: str


# The states in which the lung boxes and labels may be edited, and by which capability.
_ANNOTATION_EDITS = {
    State.IMPORTED: "annotate",
    State.PREANNOTATED: "annotate",
    State.RETURNED: "annotate",
    # A submitted radiograph may still be corrected until a radiologist takes it.
    State.LUNGS_DONE: "annotate",
    State.IN_REVIEW: "review",
}
# The states in which finding regions may be decided, edited or added (radiologists only).
_REGION_EDITS = (State.IMPORTED, State.PREANNOTATED, State.RETURNED, State.LUNGS_DONE, State.IN_REVIEW)
# The states that receive (new) model suggestions; later states hold human decisions.
_SUGGESTION_STATES = {State.IMPORTED: State.PREANNOTATED, State.PREANNOTATED: State.PREANNOTATED, State.RETURNED: State.RETURNED}

TRANSITIONS: tuple[Transition, ...] = (
    *(Transition("preannotate", s, t, SYSTEM, "keep", "preannotated") for s, t in _SUGGESTION_STATES.items()),
    *(Transition("save", s, s, cap, "take", "saved") for s, cap in _ANNOTATION_EDITS.items()),
    *(Transition("submit", s, State.LUNGS_DONE, "annotate", "release", "submitted")
      for s in (State.IMPORTED, State.PREANNOTATED, State.RETURNED, State.LUNGS_DONE)),
    *(Transition("exclude", s, State.EXCLUDED, cap, "release", "excluded") for s, cap in _ANNOTATION_EDITS.items()),
    *(Transition("edit_regions", s, s, "review", "renew", "region_edited") for s in _REGION_EDITS),
    Transition("start_review", State.LUNGS_DONE, State.IN_REVIEW, "review", "take", "review_started"),
    *(Transition("return", s, State.RETURNED, "review", "release", "returned") for s in (State.LUNGS_DONE, State.IN_REVIEW)),
    *(Transition("accept", s, State.ACCEPTED, "review", "release", "accepted") for s in (State.LUNGS_DONE, State.IN_REVIEW)),
)


@dataclass(frozen=True)
class Queue:
    """A work queue: who works it, and the states it hands out in order (oldest first within each)."""

    capability: str
    states: tuple[State, ...]


QUEUES: dict[str, Queue] = {
    # Returned work first, then pre-annotated, then the rest.
    "annotate": Queue(capability="annotate", states=(State.RETURNED, State.PREANNOTATED, State.IMPORTED)),
    # Reviews already started first (their radiologist left them), then submitted ones.
    "review": Queue(capability="review", states=(State.IN_REVIEW, State.LUNGS_DONE)),
}
ACTIONS: tuple[str, ...] = tuple(dict.fromkeys(t.action for t in TRANSITIONS))
_BY_STEP: dict[tuple[str, str], Transition] = {(t.action, t.source): t for t in TRANSITIONS}


def step(action: str, source: str) -> Transition | None:
    """The transition ``action`` from ``source``, or None when the table has none."""
    return _BY_STEP.get((action, source))


def sources(action: str, *, capabilities: frozenset[str] | set[str] | None = None) -> tuple[State, ...]:
    """The states ``action`` may start from (for a holder of ``capabilities``; all of them if None)."""
    return tuple(
        t.source for t in TRANSITIONS if t.action == action and (capabilities is None or t.capability in capabilities)
    )


def actions_for(*, state: str, capabilities: frozenset[str] | set[str]) -> list[str]:
    """The actions a holder of ``capabilities`` may take on a radiograph in ``state``, in table order."""
    return [t.action for t in TRANSITIONS if t.source == state and t.capability in capabilities]


def queued_states() -> frozenset[State]:
    """Every state some queue hands out: the states a radiograph can be held (leased) in."""
    return frozenset(s for queue in QUEUES.values() for s in queue.states)


def finished_states() -> frozenset[State]:
    """The states no step leaves (accepted, excluded): a radiograph there is done."""
    return frozenset(s for s in State if not any(t.source == s for t in TRANSITIONS))
