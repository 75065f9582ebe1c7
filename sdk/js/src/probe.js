// Probes a health check uses to reach the endpoint under check, and
// nothing else. Declarations and examples: probe.d.ts.

import { backend } from './runtime.js';

export const DEFAULT_TIMEOUT_MS = 1000;

const MESSAGES = {
  refused: () => 'connection refused',
  timeout: () => 'timed out',
  reset: () => 'connection reset',
  'invalid-response': (detail) => `invalid response: ${detail}`,
  'not-allowed': (detail) => `not allowed: ${detail}`,
};

export class ProbeError extends Error {
  constructor(kind, detail) {
    const message = MESSAGES[kind];
    if (message === undefined) {
      throw new TypeError(`unknown probe error kind \`${kind}\``);
    }
    super(message(detail ?? ''));
    this.name = 'ProbeError';
    this.kind = kind;
    this.detail = detail;
  }
}

export class HttpResponse {
  constructor({ status, headers = [], body = new Uint8Array(0), latencyUs = 0 }) {
    this.status = status;
    this.headers = headers;
    this.body = typeof body === 'string' ? encodeUtf8(body) : body;
    this.latencyUs = latencyUs;
  }

  header(name) {
    const wanted = name.toLowerCase();
    const found = this.headers.find(([key]) => key.toLowerCase() === wanted);
    return found === undefined ? undefined : found[1];
  }

  text() {
    return decodeUtf8(this.body);
  }
}

/** The request with every field filled in. */
export function httpRequest(request) {
  return {
    method: request.method ?? 'GET',
    path: request.path,
    headers: request.headers ?? [],
    timeoutMs: request.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  };
}

export function http(request) {
  return backend.http(httpRequest(request));
}

export function tcpConnect(timeoutMs = DEFAULT_TIMEOUT_MS) {
  return backend.tcpConnect(timeoutMs);
}

// QuickJS, the engine of a built plugin, has no TextDecoder.
function decodeUtf8(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; ) {
    const byte = bytes[i];
    let need = 0;
    let code = 0xfffd;
    if (byte < 0x80) {
      code = byte;
    } else if (byte >= 0xc2 && byte < 0xe0) {
      need = 1;
      code = byte & 0x1f;
    } else if (byte >= 0xe0 && byte < 0xf0) {
      need = 2;
      code = byte & 0x0f;
    } else if (byte >= 0xf0 && byte < 0xf5) {
      need = 3;
      code = byte & 0x07;
    }
    i += 1;
    let ok = true;
    for (let k = 0; k < need; k++, i++) {
      const next = bytes[i];
      if (next === undefined || (next & 0xc0) !== 0x80) {
        ok = false;
        break;
      }
      code = (code << 6) | (next & 0x3f);
    }
    const tooSmall = (need === 2 && code < 0x800) || (need === 3 && code < 0x10000);
    if (!ok || tooSmall || code > 0x10ffff || (code >= 0xd800 && code < 0xe000)) {
      code = 0xfffd;
    }
    text += String.fromCodePoint(code);
  }
  return text;
}

function encodeUtf8(text) {
  const bytes = [];
  for (const char of text) {
    const code = /** @type {number} */ (char.codePointAt(0));
    if (code < 0x80) {
      bytes.push(code);
    } else if (code < 0x800) {
      bytes.push(0xc0 | (code >> 6), 0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      bytes.push(0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f));
    } else {
      bytes.push(
        0xf0 | (code >> 18),
        0x80 | ((code >> 12) & 0x3f),
        0x80 | ((code >> 6) & 0x3f),
        0x80 | (code & 0x3f),
      );
    }
  }
  return new Uint8Array(bytes);
}
