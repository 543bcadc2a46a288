"""stabilize: durable persistence for a DAG workflow engine."""
