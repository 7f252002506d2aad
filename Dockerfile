# The fakefaces pipeline image: every Kubeflow Pipelines task and every Beam worker
# (Dataflow / Flink / Spark) runs in it. Modelled on TFX 1.16's own image
# (tfx/tools/docker/Dockerfile@v1.16.0): Python 3.10, the pinned package set of
# tfx/tools/docker/requirements.txt (our requirements.txt) and, as entrypoint, the
# Beam SDK worker boot copied from the official Beam image of the same version.
# KFP tasks override the entrypoint with TFX's kubeflow_v2_run_executor command.
#
# Build from the repository root (GPU=1 adds the CUDA libraries TensorFlow needs):
#   docker build -t <registry>/fakefaces:0.1.0 .
#   docker build --build-arg GPU=1 -t <registry>/fakefaces:0.1.0-gpu .

ARG PYTHON_VERSION=3.10
ARG BEAM_VERSION=2.59.0
# Where the installed package lives in the final image (kubeflow.image_project_root).
ARG FAKEFACES_ROOT=/usr/local/lib/python3.10/site-packages/fakefaces

FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam

# The project as a wheel: the product's top-level folders, installed under the
# single import name `fakefaces` (setup.py).
FROM python:${PYTHON_VERSION}-slim-bookworm AS wheel
WORKDIR /src
COPY setup.py ./
COPY components ./components
COPY pipeline ./pipeline
COPY serving ./serving
COPY kubeflow ./kubeflow
COPY schema ./schema
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim-bookworm

# TFX 1.16, TFMA 0.47 and TFT need Keras 2 (tf_keras), chosen before TensorFlow loads.
ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The Beam SDK harness boot; it must match the installed apache-beam (2.59.0).
COPY --from=beam /opt/apache/beam /opt/apache/beam

WORKDIR /opt/fakefaces

# Dependencies first, so code changes do not reinstall them. fairness-indicators
# goes in with --no-deps: its tensorflow-hub pin conflicts with tfx 1.16's.
COPY requirements.txt requirements-nodeps.txt ./
RUN python -m pip install -r requirements.txt && \
    python -m pip install --no-deps -r requirements-nodeps.txt

ARG GPU=0
RUN if [ "${GPU}" = "1" ]; then python -m pip install "tensorflow[and-cuda]==2.16.2"; fi

# The project, installed from the wheel built in the `wheel` stage (not editable:
# what runs in the pods is exactly what `pip install fakefaces` gives a user).
# Its files, the schema and configs included, land in FAKEFACES_ROOT
# (kubeflow.image_project_root), which the check below asserts.
ARG FAKEFACES_ROOT
COPY --from=wheel /wheels /wheels
RUN python -m pip install --no-deps /wheels/fakefaces-*.whl && rm -rf /wheels && \
    python -c "import fakefaces.components.shared.config_base as c, fakefaces.components.trainer.module, fakefaces.components.face_example_gen.executor, fairness_indicators.fairness_indicators_metrics; assert c.PROJECT_ROOT == '${FAKEFACES_ROOT}', c.PROJECT_ROOT"

ENTRYPOINT ["/opt/apache/beam/boot"]
