// What the compute pages share: instance types (docs/compute.md) and status badges.
import { h } from './dom.js';

export const INSTANCE_TYPES = [
  { name: 'nano', cpus: 0.5, memory_mb: 512, storage_max: 10 },
  { name: 'micro', cpus: 1, memory_mb: 1024, storage_max: 20 },
  { name: 'mini', cpus: 2, memory_mb: 2048, storage_max: 40 },
  { name: 'tiny', cpus: 1, memory_mb: 1024, storage_max: 20 },
  { name: 'small', cpus: 2, memory_mb: 2048, storage_max: 40 },
  { name: 'medium', cpus: 4, memory_mb: 4096, storage_max: 80 },
];

// "2 of 3 containers": the count, and the limit GET /compute/quota gives.
export function quota(count, max) { return `${count} of ${max} containers`; }

export function badge(status) {
  return h('span', { class: `badge s-${status}`, 'data-status': status }, status);
}

export function describeType(name) {
  const t = INSTANCE_TYPES.find((x) => x.name === name);
  return t ? `${t.name} · ${t.cpus} CPU · ${t.memory_mb} MB` : name;
}
