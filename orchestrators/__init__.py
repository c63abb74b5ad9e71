"""Domain-orchestrator side: the DEALER client library, the runner, the domain specs."""
