// The health-check world: judge one endpoint at a time through host probes.
// Declarations and examples: health.d.ts.

export const Verdict = Object.freeze({
  healthy: (reason) => ({ health: 'healthy', reason }),
  degraded: (reason) => ({ health: 'degraded', reason }),
  unhealthy: (reason) => ({ health: 'unhealthy', reason }),
  unknown: (reason) => ({ health: 'unknown', reason }),
});

export class HealthCheck {
  constructor(config) {}

  check(target) {
    throw new Error(`${this.constructor.name} does not implement check(target)`);
  }
}
