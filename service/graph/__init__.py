"""Graph networks: ops with their forward pass, Jacobian–vector and vector–Jacobian products, and Lipschitz bounds
(``service.graph.op``), composed into a DAG whose blocks are the report's layers."""
