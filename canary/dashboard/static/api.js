// The daemon's API as the page uses it: the same /api/v1 and bearer tokens as the CLI.
// The token lives in sessionStorage (this tab only) and travels in the Authorization
// header, never in a URL; that is why event streams are read with fetch(), not EventSource
// (which cannot send headers).

const KEY = "canary.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

// A refused request, with the API's problem detail (RFC 9457) to show as it is.
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function headers(accept, extra = {}) {
  const result = { Accept: accept, ...extra };
  const secret = token.get();
  if (secret) result.Authorization = `Bearer ${secret}`;
  return result;
}

async function problemOf(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text || `HTTP ${response.status} ${response.statusText}` };
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const init = { method, cache: "no-store", headers: headers("application/json") };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`/api/v1${path}`, init);
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return response.json();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Parse one SSE block ("id: 3\nevent: end\ndata: {...}") into {id, event, data, retry}.
function parseBlock(block) {
  const found = { id: null, event: "message", data: [], retry: null };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") found.id = value;
    else if (field === "event") found.event = value;
    else if (field === "data") found.data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) found.retry = Number(value);
  }
  return found;
}

// Follow a Server-Sent Events stream of the API until `signal` aborts or an `end` event
// arrives; reconnects after a drop with Last-Event-ID, so nothing is missed. `onEvent`
// gets (event name, parsed data). A 4xx answer (a token refused) is thrown, not retried.
export async function follow(path, onEvent, signal, onState = () => {}) {
  let lastId = null;
  let retry = 1000;
  let ended = false;
  while (!signal.aborted && !ended) {
    try {
      const extra = lastId === null ? {} : { "Last-Event-ID": lastId };
      const response = await fetch(`/api/v1${path}`, {
        headers: headers("text/event-stream", extra),
        cache: "no-store",
        signal,
      });
      if (!response.ok) throw new ApiError(response.status, await problemOf(response));
      onState("live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = parseBlock(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (block.retry !== null) retry = block.retry;
          if (block.id !== null) lastId = block.id;
          if (!block.data.length) continue;
          if (block.event === "end") ended = true;
          onEvent(block.event, JSON.parse(block.data.join("\n")));
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status < 500) throw error;
    }
    if (!ended && !signal.aborted) {
      onState("reconnecting");
      await sleep(retry);
    }
  }
  onState(ended ? "ended" : "closed");
}
