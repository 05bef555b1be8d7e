"""Container entrypoints: prepare (Dataset), train (TrainingJob), serve (ModelDeployment)."""
