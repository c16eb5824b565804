# syntax=docker/dockerfile:1
# The digit service: one image runs the API or a worker, chosen by the command.
#   docker build -t digit-service:cpu .                 (default target: cpu)
#   docker build -t digit-service:gpu --target gpu .    (TensorFlow with CUDA, for GPU workers)
ARG PYTHON_VERSION=3.11

# Build: a virtual environment with the project and its dependencies.
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY training ./training
RUN pip install --upgrade pip && pip install ".[s3]"

FROM build AS build-gpu
# TensorFlow's CUDA and cuDNN libraries from pip; the driver comes from the host's
# NVIDIA container toolkit.
RUN pip install "tensorflow[and-cuda]"

# Runtime: the virtual environment only, run as a user without privileges.
FROM python:${PYTHON_VERSION}-slim AS runtime
RUN useradd --create-home --uid 10001 app && mkdir -p /data && chown app:app /data
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    ARTIFACTS_DIR=/data
WORKDIR /home/app
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-m", "service.healthcheck", "api"]
CMD ["python", "-m", "service.api_server"]

FROM runtime AS gpu
COPY --from=build-gpu /opt/venv /opt/venv
USER app

FROM runtime AS cpu
COPY --from=build /opt/venv /opt/venv
USER app
