"""``stabilize ui``: a read-only web dashboard of runs, their DAGs, the queue and the dead letters.

Needs the ``ui`` extra (``pip install 'stabilize-store[ui]'``: Starlette, uvicorn, Jinja2); the
DAG's layout library (dagre) is vendored under ``static/vendor``. ``create_app`` in
``stabilize.ui.app`` builds the ASGI application for any store; ``stabilize.ui.command`` is the
command line's ``ui`` command. Importing this package imports none of the web libraries.
"""
