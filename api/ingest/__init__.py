"""Request bodies in: JSON and multipart bodies read within the limit, .safetensors files, tensors decoded."""
