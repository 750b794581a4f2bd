"""The ComfyUI-free core of soulid: Soul ID file, photo QA, face analysis,
identity math and the library. Nothing here imports ComfyUI, torch or diffusers
at import time."""
