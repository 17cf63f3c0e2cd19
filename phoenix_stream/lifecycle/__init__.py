"""Model lifecycle: deployments, feedback, evaluation, promotion."""
