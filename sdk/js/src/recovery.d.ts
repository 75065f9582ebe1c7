/**
 * The recovery world: decide what happens after a failed attempt.
 * @module
 */

import type { RequestInfo } from './types.js';

/**
 * How an attempt failed: the connection was refused, not made in time, or
 * broke mid-request; no answer in time; the endpoint answered with an HTTP
 * `status` the route counts as failed (in `failure.status`); or a gRPC
 * endpoint answered with a `grpc-status` (in `failure.grpcStatus`: 2
 * unknown, 4 deadline exceeded, 8 resource exhausted, 13 internal, 14
 * unavailable, 15 data loss). More kinds may come: keep a default branch.
 *
 * @example
 * const serverError = (failure) => failure.kind === 'status' && failure.status >= 500;
 */
export type FailureKind =
  | 'connect-refused'
  | 'connect-timeout'
  | 'reset'
  | 'response-timeout'
  | 'status'
  | 'grpc-status';

/**
 * Every failure kind.
 *
 * @example
 * import { FAILURE_KINDS } from '@switchyard/sdk';
 * console.assert(FAILURE_KINDS.includes('grpc-status'));
 */
export declare const FAILURE_KINDS: readonly FailureKind[];

/**
 * One failed attempt, as the host reports it.
 *
 * @example
 * const UNAVAILABLE = 14;
 * const retryable = (failure) =>
 *   failure.replayable && (failure.kind === 'reset' || failure.grpcStatus === UNAVAILABLE);
 */
export interface Failure {
  /** The endpoint that failed. */
  endpoint: number;
  /** How it failed. */
  kind: FailureKind;
  /** The HTTP status, when `kind` is `'status'`. */
  status?: number;
  /** The gRPC status, when `kind` is `'grpc-status'`. */
  grpcStatus?: number;
  /** The request, with the attempt number that failed. */
  request: RequestInfo;
  /** The request's method. */
  method: string;
  /** Whether the host can send the request again (idempotent, small body). */
  replayable: boolean;
  /** Time since the request arrived, in milliseconds. */
  elapsedMs: number;
}

/**
 * Whether the endpoint answered at all (with an HTTP or a gRPC status).
 *
 * @example
 * import { isStatus } from '@switchyard/sdk';
 * console.assert(!isStatus({ kind: 'reset' }));
 */
export declare function isStatus(failure: Pick<Failure, 'kind'>): boolean;

/**
 * Send the request again, after `delayMs`, to another endpoint unless
 * `sameEndpoint`.
 *
 * @example
 * import { Decision } from '@switchyard/sdk';
 * const later = Decision.retry({ delayMs: 10 });
 */
export interface Retry {
  /** Wait this long first, in milliseconds. */
  delayMs: number;
  /** Try the same endpoint rather than another. */
  sameEndpoint: boolean;
}

/**
 * What the host should do with a failed attempt: send it again, eject the
 * endpoint (and maybe retry elsewhere), or give up and answer the client
 * (the endpoint's own response, or `status`). The host still enforces its
 * retry budget and the route's deadline, and never replays a request it
 * cannot. Build one with `Decision.retry`, `Decision.eject` or
 * `Decision.giveUp`.
 *
 * @example
 * import { Decision } from '@switchyard/sdk';
 * const decision = Decision.giveUp(503);
 * console.assert(decision.action === 'give-up' && decision.status === 503);
 */
export type Decision =
  | ({ action: 'retry' } & Retry)
  | { action: 'eject'; durationMs: number; retry: Retry | undefined }
  | { action: 'give-up'; status: number | undefined };

/**
 * Builds decisions.
 *
 * @example
 * import { Decision } from '@switchyard/sdk';
 * Decision.retry({ delayMs: 25, sameEndpoint: false });
 * Decision.eject({ durationMs: 30_000, retry: { delayMs: 0 } });
 * Decision.giveUp(); // the endpoint's own response, or the host's error status
 */
export declare const Decision: {
  /**
   * Send the request again; by default at once, to another endpoint.
   *
   * @example
   * import { Decision } from '@switchyard/sdk';
   * Decision.retry({ delayMs: 20, sameEndpoint: true });
   */
  retry(retry?: Partial<Retry>): Decision;
  /**
   * Take the endpoint out of the eligible set for `durationMs`, and retry
   * the request elsewhere when `retry` is given.
   *
   * @example
   * import { Decision } from '@switchyard/sdk';
   * Decision.eject({ durationMs: 10_000, retry: { delayMs: 0 } });
   */
  eject(ejection: { durationMs: number; retry?: Partial<Retry> }): Decision;
  /**
   * Answer the client: the endpoint's own response, or `status` when given.
   *
   * @example
   * import { Decision } from '@switchyard/sdk';
   * Decision.giveUp(503);
   */
  giveUp(status?: number): Decision;
};

/**
 * A recovery policy for one pool. Extend it and make the subclass the
 * default export of `src/plugin.js`.
 *
 * The host makes one object of your class per pool with `new`, given the
 * pool's `recovery.config`, parsed (throwing refuses it, with your message),
 * and asks it about every failed attempt in that pool. An exception thrown
 * from `onFailure` is caught and logged, and the request is given up.
 *
 * @example
 * // @ts-check
 * import { Decision, Recovery } from '@switchyard/sdk';
 *
 * // Retries once elsewhere, then gives up.
 * export default class RetryOnce extends Recovery {
 *   onFailure(failure) {
 *     if (failure.replayable && failure.request.attempt === 0) {
 *       return Decision.retry();
 *     }
 *     return Decision.giveUp();
 *   }
 * }
 */
export declare class Recovery {
  /**
   * Builds the policy from the pool's `recovery.config`. Throw to refuse it.
   *
   * @example
   * import { ConfigReader, Recovery } from '@switchyard/sdk';
   * class Retries extends Recovery {
   *   constructor(config) {
   *     super(config);
   *     const read = new ConfigReader(config);
   *     this.retries = read.integer('retries', { default: 1, max: 5 });
   *     read.finish();
   *   }
   * }
   */
  constructor(config: object);

  /**
   * Decides what to do with one failed attempt.
   *
   * @example
   * import { Decision, Recovery } from '@switchyard/sdk';
   * class EjectRefusing extends Recovery {
   *   onFailure(failure) {
   *     return failure.kind === 'connect-refused' ? Decision.eject({ durationMs: 10_000 }) : Decision.giveUp();
   *   }
   * }
   */
  onFailure(failure: Failure): Decision;

  /**
   * The pool's state, carried to the next version of the plugin when its
   * file is swapped, as `Balancer.snapshot` does for a balancer. The default
   * carries nothing. State every worker shares is better kept in `store`,
   * which outlives versions by itself.
   *
   * @example
   * import { Recovery } from '@switchyard/sdk';
   * class Budget extends Recovery {
   *   spent = 0;
   *   snapshot() {
   *     return new Uint8Array([this.spent]);
   *   }
   * }
   */
  snapshot(): Uint8Array;

  /**
   * Takes over the pool's state from an earlier version's `snapshot` (never
   * called with empty bytes); throwing refuses the new version, with the
   * message shown. The default ignores it.
   *
   * @example
   * import { Recovery } from '@switchyard/sdk';
   * class Budget extends Recovery {
   *   spent = 0;
   *   restore(state) {
   *     this.spent = state[0] ?? 0;
   *   }
   * }
   */
  restore(state: Uint8Array): void;
}
