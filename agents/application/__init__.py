"""The application agent: answer quality per deployment and configuration, and its statistics."""
