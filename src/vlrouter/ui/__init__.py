"""The web console at ``/ui``: static pages (``static/``) and the JSON endpoints they read (``routes``)."""
