// The values every world shares. Declarations and examples: types.d.ts.

export const HEALTH = Object.freeze(['healthy', 'degraded', 'unhealthy', 'unknown']);
export const PRIORITIES = Object.freeze(['p0', 'p1', 'p2', 'p3', 'p4']);

export function isServing(health) {
  return health !== 'unhealthy';
}

export function endpoint(id, address, options = {}) {
  return {
    id,
    address,
    weight: options.weight ?? 1,
    zone: options.zone,
    labels: options.labels ?? [],
  };
}

export function load(fields = {}) {
  return {
    inFlight: 0,
    capacity: 0,
    ewmaLatencyUs: 0,
    successPermille: 1000,
    health: 'unknown',
    ...fields,
  };
}

export function requestInfo(fields = {}) {
  return { priority: 'p2', attempt: 0, hash: undefined, ...fields };
}
