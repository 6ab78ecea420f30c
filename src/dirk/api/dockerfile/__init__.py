"""The Dockerfile frontend of `Directory.dockerBuild`: `parse` (dockerfile-parse) -> `build`
(stages planned lazily, each instruction as the SDK's container operations)."""
