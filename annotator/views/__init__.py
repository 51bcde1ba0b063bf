"""Server-rendered pages. The workspaces are ES-module apps on top of the REST API; the home,
queue and admin pages render their tables here and draw their plots from JSON in the page."""
from .home import annotate_queue, home, radiograph_detail, radiograph_list, review_queue
from .manage import dashboard, exports, imports, models, training, users
from .workspace import annotate_workspace, review_workspace

__all__ = [
    "annotate_queue",
    "annotate_workspace",
    "dashboard",
    "exports",
    "home",
    "imports",
    "models",
    "radiograph_detail",
    "radiograph_list",
    "review_queue",
    "review_workspace",
    "training",
    "users",
]
