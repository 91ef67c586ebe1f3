"""Keep secrets (the LiteLLM master key, API keys) out of every string verify prints."""

from __future__ import annotations

import re

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{6,}")
_SK = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")


class Redactor:
    """Replaces known secrets, plus anything shaped like `Bearer ...` or `sk-...`, with `***`."""

    def __init__(self, secrets: list[str | None] | None = None) -> None:
        self._secrets: list[str] = []
        for s in secrets or []:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 3 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)  # longest first: no partial leftovers

    def __call__(self, text: object) -> str:
        s = "" if text is None else str(text)
        for secret in self._secrets:
            s = s.replace(secret, "***")
        s = _BEARER.sub(r"\1***", s)
        return _SK.sub("sk-***", s)


def redact(text: object, secrets: list[str | None] | None = None) -> str:
    return Redactor(secrets)(text)
