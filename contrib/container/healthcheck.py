"""The container's HEALTHCHECK: exit 0 when castui's ``/healthz`` answers 200, else 1.

Run by the image's own Python (no curl in the image). It prints the endpoint's JSON, or one
line saying why it could not be read, because ``docker inspect`` shows this output to the
person wondering why the container is "unhealthy"; never a traceback.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

URL = os.environ.get("CASTUI_HEALTHCHECK_URL", "http://127.0.0.1:9108/healthz")


def main() -> int:
    try:
        with urllib.request.urlopen(URL, timeout=4) as answer:
            print(answer.read().decode("utf-8", "replace"))
            return 0
    except urllib.error.HTTPError as exc:  # 503: the loop is stuck; the body says how long
        print(exc.read().decode("utf-8", "replace"))
        return 1
    except (OSError, ValueError) as exc:
        print(
            f"{URL} did not answer ({exc}): castui is starting, stopped, or metrics.enabled"
            " is off in /config/settings.yaml (the health endpoint is served with the metrics)"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
