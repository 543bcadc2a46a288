"""The SQLAlchemy implementation of the store and the queue's tables, for every dialect.

``rows`` declares the schema and ``mapping`` is the only place domain objects meet rows;
``queries`` and ``writes`` build statements, ``dialects`` holds what differs between databases,
``engine`` makes engines from URLs, ``units`` runs each public call as one unit of work, and
``store`` is the ``WorkflowStore`` built on them.
"""
