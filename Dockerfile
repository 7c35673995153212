# mqtt2sms as a container image. `Dockerfile` and `Containerfile` are the same file (a test
# keeps them identical): Docker looks for the one, Podman for the other.
#   docker build -t mqtt2sms .        (or podman build --format docker -t mqtt2sms .)
# Builds for amd64, arm64 and armv7 from this one file: no compiler is installed, so every
# dependency comes as a wheel or is pure Python (PyYAML falls back to pure Python on armv7).
# The `embedded` extra (the built-in broker, amqtt; 0.11.0 on ARM, whose dependencies are pure
# Python) is in, so the repository's config.yaml (`mqtt.embedded: true`) runs as it is;
# --build-arg EXTRAS="" leaves it out.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
ARG EXTRAS="[embedded]"
COPY . /src
RUN python3 -m venv /opt/mqtt2sms \
 && /opt/mqtt2sms/bin/pip install --no-cache-dir --disable-pip-version-check "/src${EXTRAS}"

FROM ${BASE}
COPY --from=build /opt/mqtt2sms /opt/mqtt2sms
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home mqtt2sms \
 && mkdir -p /data /etc/mqtt2sms && chown mqtt2sms:mqtt2sms /data
ENV PATH=/opt/mqtt2sms/bin:$PATH \
    STATE_DIRECTORY=/data \
    MQTT2SMS_LOG=plain \
    PYTHONDONTWRITEBYTECODE=1
# The config: /data/config.yaml (./config.yaml from here), else /etc/mqtt2sms/config.yaml
# mounted read-only. Secrets: password_file: /run/secrets/smtp_password and friends.
WORKDIR /data
VOLUME /data
USER mqtt2sms
# SIGTERM (docker stop) publishes `offline` and exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["mqtt2sms", "health"]
ENTRYPOINT ["mqtt2sms", "run"]
