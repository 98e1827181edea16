# docker buildx bake            -> both images (the default group)
# docker buildx bake cpu        -> cube:cpu
# docker buildx bake cuda       -> cube:cuda (torch from PyPI);  TORCH_SOURCE=nightly docker buildx bake cuda
# Variables come from the environment of the same name. Without buildx: make image-cpu / make image-cuda.

variable "BASE_IMAGE" {
  default = "python:3.11-slim-bookworm"
}

variable "TORCH_SOURCE" {
  default = "pypi"
}

variable "TORCH_CUDA" {
  default = "cu128"
}

variable "TAG_PREFIX" {
  default = "cube"
}

group "default" {
  targets = ["cpu", "cuda"]
}

target "cpu" {
  context    = "."
  dockerfile = "Dockerfile.cpu"
  args = {
    BASE_IMAGE = BASE_IMAGE
  }
  tags = ["${TAG_PREFIX}:cpu"]
}

target "cuda" {
  context    = "."
  dockerfile = "Dockerfile.cuda"
  args = {
    BASE_IMAGE      = BASE_IMAGE
    TORCH_SOURCE    = TORCH_SOURCE
    TORCH_CUDA      = TORCH_CUDA
  }
  tags = [TORCH_SOURCE == "nightly" ? "${TAG_PREFIX}:cuda-nightly" : "${TAG_PREFIX}:cuda"]
  platforms = ["linux/amd64"]
}
