"""Server-rendered pages (the workspace is an ES-module app on top of the REST API)."""
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse


@login_required
def home(request):
    return HttpResponse("Lungmark")
