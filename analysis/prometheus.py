"""Prometheus as a metric provider: PromQL over the gate's window, through prometheus-api-client.

Three rules shape it:

* An empty result is "no data" (``None``), never zero, and so is NaN (a rate over no
  requests: 0/0). Only a query that answers with a number gives a value.
* A query returning several series is an ERROR that says so: picking one would judge the
  wrong thing. Aggregate it (``sum(...)``) in the query.
* The client is synchronous (requests), so every HTTP call runs in a small thread pool of
  its own and never blocks the event loop. The client's own retries are off: the gate
  policy (``consecutive_error_limit``, one evaluation per interval) is the retry, and a
  slow retry loop here would only hide an outage behind the provider timeout.

Queries are templates (``config.templates``): ``{{ canary_version }}``, ``{{ stable_version
}}``, ``{{ window }}`` (the gate's window as a PromQL duration, e.g. ``300s``) and the
target's fields. For the statistical judge the same query is also evaluated over the
window as a range query, one value per ``statistical.step``, with ``{{ window }}`` standing
for that step, so consecutive values do not overlap.

This module is the whole ``prometheus`` provider: its presets, its gate options
(``PresetOptions``), its daemon settings (``CANARY_PROMETHEUS_*``), its health check and
its declaration (``PROVIDER``, registered in ``analysis/registry.py``). requests and
prometheus-api-client are imported on first use, so reading a spec never loads them.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from analysis.base import Measurement, MetricQuery, ProviderError, Window
from analysis.kind import Preset, ProviderKind, no_clients
from config.targets import StrictModel
from config.templates import TemplateError, render
from strategies.errortext import one_line, reduce_error

if TYPE_CHECKING:
    import requests
    from prometheus_api_client.prometheus_connect import PrometheusConnect

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _prometheus_name(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise PydanticCustomError(
                "prometheus_name",
                "{value} is not a Prometheus {what}; use letters, digits and '_'"
                + (" (and ':')" if what == "metric name" else "")
                + ", not starting with a digit",
                {"value": repr(value), "what": what},
            )
        return value

    return AfterValidator(check)


MetricName = Annotated[
    str,
    _prometheus_name(_METRIC_NAME, "metric name"),
    WithJsonSchema({"type": "string", "pattern": _METRIC_NAME.pattern}),
]
LabelName = Annotated[
    str,
    _prometheus_name(_LABEL_NAME, "label name"),
    WithJsonSchema({"type": "string", "pattern": _LABEL_NAME.pattern}),
]


class PresetOptions(StrictModel):
    """Where the Prometheus presets find your metrics: names and labels vary by stack."""

    requests_metric: MetricName = Field(
        default="http_requests_total", description="counter of HTTP requests"
    )
    latency_metric: MetricName = Field(
        default="http_request_duration_seconds",
        description="histogram of request latency in seconds (its _bucket and _count series)",
    )
    version_label: LabelName = Field(default="version", description="label holding the version")
    code_label: LabelName = Field(default="code", description="label holding the status code")
    selector: str | None = Field(
        default=None,
        min_length=1,
        description='extra label matchers for every preset query, e.g. job="checkout"',
    )


DEFAULT_OPTIONS = PresetOptions()


class PrometheusSettings(BaseModel):
    """The daemon settings of this provider, read as ``CANARY_PROMETHEUS_*``.

    ``config.settings.Settings`` is composed of these fields (every provider's), so they
    are checked at daemon start with the others and named by their variable in errors.
    """

    prometheus_url: str | None = Field(
        default=None, description="Prometheus base URL; unset: gates cannot use prometheus"
    )
    prometheus_timeout: float = Field(default=10.0, description="seconds for one PromQL call")
    prometheus_bearer_token: SecretStr | None = None
    prometheus_username: str | None = None
    prometheus_password: SecretStr | None = None
    prometheus_verify_tls: bool = True
    prometheus_ca_file: str | None = Field(
        default=None, description="PEM file of the CA that signed Prometheus' certificate"
    )

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if "@" in parts.netloc:  # checked first: the value must not be echoed
            raise ValueError(
                "holds credentials; put them in CANARY_PROMETHEUS_USERNAME and "
                "CANARY_PROMETHEUS_PASSWORD (or CANARY_PROMETHEUS_BEARER_TOKEN) instead"
            )
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL; e.g. http://prometheus:9090")
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r} has a query or fragment; give the base URL only")
        return value

    @field_validator("prometheus_timeout")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"{value:g} is not a number of seconds above 0; e.g. 10")
        return value

    @field_validator("prometheus_ca_file")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{value!r} is not a file; give the path of a PEM CA bundle")
        return value

    @model_validator(mode="after")
    def _prometheus_together(self) -> Any:
        found: list[tuple[str, str]] = []
        secret_given = self.prometheus_bearer_token is not None
        if secret_given and self.prometheus_username is not None:
            found.append(
                (
                    "prometheus_bearer_token",
                    "give either a bearer token or a username and password, not both",
                )
            )
        if self.prometheus_username is not None and self.prometheus_password is None:
            found.append(("prometheus_password", "required with CANARY_PROMETHEUS_USERNAME"))
        if self.prometheus_password is not None and self.prometheus_username is None:
            found.append(("prometheus_username", "required with CANARY_PROMETHEUS_PASSWORD"))
        if self.prometheus_ca_file is not None and not self.prometheus_verify_tls:
            found.append(
                (
                    "prometheus_ca_file",
                    "is set but CANARY_PROMETHEUS_VERIFY_TLS is false; drop one",
                )
            )
        given = [
            name
            for name in ("prometheus_bearer_token", "prometheus_username", "prometheus_ca_file")
            if getattr(self, name) is not None
        ]
        if given and self.prometheus_url is None:
            found.append(("prometheus_url", f"required with CANARY_{given[0].upper()}"))
        if found:
            raise PydanticCustomError(
                "setting_problems", "; ".join(m for _, m in found), {"problems": found}
            )
        return self


@dataclass(frozen=True)
class PrometheusOptions:
    """How to reach Prometheus (daemon settings ``CANARY_PROMETHEUS_*``)."""

    url: str
    timeout: float = 10.0
    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    max_workers: int = 4

    def __repr__(self) -> str:  # never show credentials, even in a traceback
        return f"PrometheusOptions(url={self.url!r}, timeout={self.timeout})"


# ---------------------------------------------------------------- the queries


def promql_duration(seconds: float) -> str:
    """A PromQL duration for ``seconds``: ``300s``, or ``1500ms`` when not whole seconds."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def _string(value: str) -> str:
    """``value`` as a PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Expressions:
    value: str
    samples: str | None = None
    series: str | None = None  # evaluated as a range query, one value per step


def preset_queries(
    name: str, opts: PresetOptions, version: str, extra: str | None, w: str
) -> tuple[str, str]:
    """A preset's value and sample-count PromQL for one version over a range of ``w``."""
    matchers = [f"{opts.version_label}={_string(version)}"]
    if extra:
        matchers.append(extra)
    selector = "{" + ", ".join(matchers) + "}"
    errors = "{" + ", ".join([*matchers, f'{opts.code_label}=~"5.."']) + "}"
    if name == "http-error-rate":
        requests_ = opts.requests_metric
        value = (
            f"(sum(rate({requests_}{errors}[{w}])) or vector(0))"
            f" / sum(rate({requests_}{selector}[{w}]))"
        )
        return value, f"sum(increase({requests_}{selector}[{w}]))"
    if name == "http-p95-latency":
        latency = opts.latency_metric
        value = f"histogram_quantile(0.95, sum by (le) (rate({latency}_bucket{selector}[{w}])))"
        return value, f"sum(increase({latency}_count{selector}[{w}]))"
    raise TemplateError(f"prometheus has no preset {name!r}")


def expressions(query: MetricQuery, window: Window) -> Expressions:
    """The PromQL for ``query``; raises ``TemplateError`` for a variable without a value."""
    variables = {**query.variables, "window": promql_duration(window.seconds)}
    step = promql_duration(query.series_step) if query.series_step else None
    if query.preset is not None:
        opts = query.preset_options or DEFAULT_OPTIONS
        version = render("{{ " + f"{query.side}_version" + " }}", variables)
        extra = render(opts.selector, variables) if opts.selector else None
        value, count = preset_queries(query.preset, opts, version, extra, variables["window"])
        series = preset_queries(query.preset, opts, version, extra, step)[0] if step else None
        # The judges weigh the canary's requests; the stable's count would be a wasted query.
        return Expressions(value, count if query.side == "canary" else None, series)
    if query.expression is None:
        raise TemplateError("the gate has neither a query nor a preset")
    samples = query.samples_expression
    return Expressions(
        value=render(query.expression, variables),
        samples=render(samples, variables) if samples else None,
        series=render(query.expression, {**variables, "window": step}) if step else None,
    )


# ---------------------------------------------------------------- the answers


def _number(text: Any) -> float | None:
    """A sample value as Prometheus writes it ("0.5", "NaN", "+Inf"); NaN/Inf are no data."""
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value


def _labels(series: Mapping[str, Any]) -> str:
    metric = series.get("metric") or {}
    return "{" + ", ".join(f"{k}={v!r}" for k, v in sorted(metric.items())) + "}"


def instant_value(result: Any, what: str) -> float | None:
    """The one number in an instant query's ``result``; None for an empty result or NaN."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return _number(result[1])  # a scalar: [time, "value"]
    if not result:
        return None
    if len(result) > 1:
        shown = ", ".join(_labels(s) for s in result[:3])
        raise ProviderError(
            f"{what} returned {len(result)} series ({shown}{', ...' if len(result) > 3 else ''}); "
            "aggregate it to one, e.g. with sum(...)"
        )
    return _number(result[0]["value"][1])


def range_values(result: Any, what: str) -> tuple[float, ...]:
    if not result:
        return ()
    if len(result) > 1:
        raise ProviderError(
            f"{what} returned {len(result)} series over the window; aggregate it to one"
        )
    numbers = (_number(v) for _, v in result[0]["values"])
    return tuple(n for n in numbers if n is not None)


_STATUS = re.compile(r"HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


def describe_failure(exc: Exception, url: str, timeout: float) -> str:
    """Why a call failed, in one line, without the noise of nested exception reprs (a
    proxy's HTML error page included: ``strategies.errortext``)."""
    import requests
    from prometheus_api_client.exceptions import PrometheusApiClientException

    text = str(exc)
    if isinstance(exc, PrometheusApiClientException):
        match = _STATUS.match(text)
        if match is None:
            return reduce_error(None, text, url=url)
        status, raw = int(match.group(1)), match.group(2)
        try:
            body = json.loads(ast.literal_eval(raw))
            detail = f": {body.get('errorType', '')} {body.get('error', '')}".rstrip()
        except (ValueError, SyntaxError, TypeError, AttributeError):
            body = _literal(raw)  # not Prometheus' JSON: a proxy's page, say
            detail = f": {reduce_error(None, body, url=url, status=status)}" if body else ""
        detail = one_line(detail)
        if status in (401, 403):
            return f"HTTP {status} from {url}: check the CANARY_PROMETHEUS_* credentials"
        if status in (400, 422):
            return f"Prometheus refused the query (HTTP {status}){detail}"
        return f"HTTP {status} from {url}{detail}"
    if isinstance(exc, requests.exceptions.SSLError):
        found = re.search(r"certificate verify failed[^'\")]*", text)
        return f"TLS to {url} failed: {found.group(0) if found else 'handshake error'}"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"{url} did not answer within {timeout:g}s"
    if isinstance(exc, requests.exceptions.ConnectionError):
        found = _ERRNO.search(text)
        return (
            f"cannot connect to {url}: {found.group(1).strip() if found else 'connection failed'}"
        )
    return reduce_error(type(exc).__name__, text, url=url)


def _literal(raw: str) -> str:
    """The body text inside the client's ``b'...'`` repr (the repr itself if it is not one)."""
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# ---------------------------------------------------------------- the provider


class PrometheusProvider:
    """Answers a batch of gate queries; each PromQL call runs in the provider's threads."""

    kind: ClassVar[str] = "prometheus"

    def __init__(self, options: PrometheusOptions) -> None:
        self.options = options
        self.url = options.url.rstrip("/")
        self._executor = ThreadPoolExecutor(
            max_workers=options.max_workers, thread_name_prefix="prometheus"
        )
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _client(self) -> PrometheusConnect:
        """One client (and HTTP session) per worker thread: requests sessions are not shared."""
        client: PrometheusConnect | None = getattr(self._local, "client", None)
        if client is not None:
            return client
        import requests
        from prometheus_api_client.prometheus_connect import PrometheusConnect
        from urllib3.util.retry import Retry

        o = self.options
        session = requests.Session()
        session.verify = o.ca_file if (o.verify_tls and o.ca_file) else o.verify_tls
        headers = {"Authorization": f"Bearer {o.bearer_token}"} if o.bearer_token else None
        auth = (o.username, o.password or "") if o.username else None
        client = PrometheusConnect(
            url=self.url,
            headers=headers,  # type: ignore[arg-type]  # None: no extra headers
            auth=auth,  # type: ignore[arg-type]  # None: no basic auth
            session=session,
            timeout=o.timeout,  # type: ignore[arg-type]  # requests takes a float
            retry=Retry(total=0, raise_on_status=False),
        )
        self._local.client = client
        with self._lock:
            self._sessions.append(session)
        return client

    def _instant(self, expression: str, window: Window) -> Any:
        return self._client().custom_query(
            expression, params={"time": f"{window.end.timestamp():.3f}"}
        )

    def _range(self, expression: str, window: Window, step: float) -> Any:
        return self._client().custom_query_range(
            expression,
            start_time=window.start + timedelta(seconds=step),
            end_time=window.end,
            step=f"{step:g}",
        )

    async def _call(self, fn: Any, *args: Any) -> Any:
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except (PrometheusApiClientException, requests.exceptions.RequestException) as exc:
            raise ProviderError(describe_failure(exc, self.url, self.options.timeout)) from None
        except ValueError as exc:  # a body that is not JSON
            said = reduce_error(None, str(exc), url=self.url)
            raise ProviderError(f"unexpected answer from {self.url}: {said}") from None

    async def _measure(self, query: MetricQuery, window: Window) -> Measurement:
        try:
            plan = expressions(query, window)
        except TemplateError as exc:
            raise ProviderError(f"{query.side} query: {exc}") from None
        calls = [self._call(self._instant, plan.value, window)]
        if plan.samples is not None:
            calls.append(self._call(self._instant, plan.samples, window))
        if plan.series is not None and query.series_step:
            calls.append(self._call(self._range, plan.series, window, query.series_step))
        answers = list(await asyncio.gather(*calls, return_exceptions=True))
        failed = [a for a in answers if isinstance(a, BaseException)]
        if failed:
            raise failed[0]
        try:
            value = instant_value(answers.pop(0), f"the {query.side} query")
            samples = instant_value(answers.pop(0), "the samples query") if plan.samples else None
            values = range_values(answers.pop(0), f"the {query.side} query") if answers else ()
        except (KeyError, IndexError, TypeError, ValueError) as exc:  # not the API's shape
            raise ProviderError(f"unexpected answer from {self.url}: {exc!r}") from None
        detail: dict[str, Any] = {"query": plan.value}
        if plan.samples:
            detail["samples_query"] = plan.samples
        return Measurement(value, samples, detail=detail, values=values)

    async def query(
        self, queries: Sequence[MetricQuery], window: Window
    ) -> Sequence[Measurement | ProviderError]:
        async def one(query: MetricQuery) -> Measurement | ProviderError:
            try:
                return await self._measure(query, window)
            except ProviderError as exc:
                return exc

        return await asyncio.gather(*(one(q) for q in queries))

    async def health(self) -> None:
        """A trivial query (``vector(1)``) through the same session and credentials."""
        answer = await self._call(lambda: self._client().custom_query("vector(1)"))
        if not answer:
            raise ProviderError(f"{self.url} answered vector(1) with no result")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()


def options(settings: PrometheusSettings) -> PrometheusOptions | None:
    """How to reach Prometheus, from the daemon's settings; None when no URL is set."""
    if settings.prometheus_url is None:
        return None
    token, password = settings.prometheus_bearer_token, settings.prometheus_password
    return PrometheusOptions(
        url=settings.prometheus_url,
        timeout=settings.prometheus_timeout,
        bearer_token=token.get_secret_value() if token is not None else None,
        username=settings.prometheus_username,
        password=password.get_secret_value() if password is not None else None,
        verify_tls=settings.prometheus_verify_tls,
        ca_file=settings.prometheus_ca_file,
    )


def build(settings: PrometheusSettings, clients: None) -> PrometheusProvider | None:
    found = options(settings)
    return PrometheusProvider(found) if found is not None else None


PROVIDER = ProviderKind(
    name="prometheus",
    summary="PromQL over the gate's window (instant queries; range queries for statistical and "
    "relative values)",
    presets=(
        Preset(
            "http-error-rate",
            "share of HTTP requests answered 5xx, per version (preset_options name the metric)",
            rate=True,
        ),
        Preset("http-p95-latency", "P95 of an HTTP latency histogram, per version", unit="s"),
    ),
    series=True,
    settings=PrometheusSettings,
    clients=no_clients,
    build=build,
    unconfigured="set CANARY_PROMETHEUS_URL",
    # A sample lands one scrape interval (15-30 s usually) after the request it counts.
    delay=30.0,
)
