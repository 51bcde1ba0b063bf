"""Django app: radiographs, annotations, the review workflow, exports and the REST API."""
