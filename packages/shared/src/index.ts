export * from './errors.js';
export * from './limits.js';
export * from './names.js';
export * from './protocol.js';
export * from './input.js';
export * from './version.js';
export * from './r-packages.js';
export * from './poll.js';
