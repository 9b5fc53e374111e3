# syntax=docker/dockerfile:1
# isin-pipeline: one image for the producer, the scheduler and the stream worker.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY isin_pipeline isin_pipeline
COPY ops ops
COPY producer producer
COPY scheduler scheduler
COPY schemas schemas
COPY stream_app stream_app
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /home/isin --create-home isin \
    && mkdir -p /var/lib/isin-pipeline && chown isin /var/lib/isin-pipeline
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
ENV STATE_DIR=/var/lib/isin-pipeline \
    WEB_HOST=0.0.0.0 \
    LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
EXPOSE 6066 9108
ENTRYPOINT ["isin-pipeline"]
CMD ["--help"]
