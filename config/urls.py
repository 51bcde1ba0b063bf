"""Top-level routes: pages, the REST API and its schema, the Django admin, login."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI with its start-up script as a file of its own (the CSP allows no inline script);
    # a signed-out visitor is sent to the login page.
    path(
        "api/docs/",
        login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api_docs.html")),
        name="api-docs",
    ),
    path("api/", include("annotator.urls")),
    path("api/", include("inference.urls")),
    path("", include("annotator.pages_urls")),
]
handler400 = "annotator.views.errors.bad_request"
handler403 = "annotator.views.errors.permission_denied"
handler404 = "annotator.views.errors.page_not_found"
handler500 = "annotator.views.errors.server_error"
