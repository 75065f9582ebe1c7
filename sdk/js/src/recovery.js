// The recovery world: decide what happens after a failed attempt.
// Declarations and examples: recovery.d.ts.

export const FAILURE_KINDS = Object.freeze([
  'connect-refused',
  'connect-timeout',
  'reset',
  'response-timeout',
  'status',
  'grpc-status',
]);

export const Decision = Object.freeze({
  retry: ({ delayMs = 0, sameEndpoint = false } = {}) => ({ action: 'retry', delayMs, sameEndpoint }),
  eject: ({ durationMs, retry }) => ({
    action: 'eject',
    durationMs,
    retry:
      retry === undefined
        ? undefined
        : { delayMs: retry.delayMs ?? 0, sameEndpoint: retry.sameEndpoint ?? false },
  }),
  giveUp: (status) => ({ action: 'give-up', status }),
});

export function isStatus(failure) {
  return failure.kind === 'status' || failure.kind === 'grpc-status';
}

export class Recovery {
  constructor(config) {}

  onFailure(failure) {
    throw new Error(`${this.constructor.name} does not implement onFailure(failure)`);
  }

  snapshot() {
    return new Uint8Array(0);
  }

  restore(state) {}
}
