# docker buildx bake            -> both images (the default group)
# docker buildx bake cpu        -> cube-bench:cpu
# docker buildx bake cuda       -> cube-bench:cuda;  TORCH_CHANNEL=nightly docker buildx bake cuda
# Variables come from the environment of the same name.

variable "BASE_IMAGE" {
  default = "python:3.11-slim-bookworm"
}

variable "CUDA_BASE_IMAGE" {
  default = "nvidia/cuda:12.8.1-runtime-ubuntu24.04"
}

variable "TORCH_CHANNEL" {
  default = "stable"
}

variable "TORCH_CUDA" {
  default = "cu128"
}

variable "TAG_PREFIX" {
  default = "cube-bench"
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
    CUDA_BASE_IMAGE = CUDA_BASE_IMAGE
    TORCH_CHANNEL   = TORCH_CHANNEL
    TORCH_CUDA      = TORCH_CUDA
  }
  tags = [TORCH_CHANNEL == "nightly" ? "${TAG_PREFIX}:cuda-nightly" : "${TAG_PREFIX}:cuda"]
  platforms = ["linux/amd64"]
}
