export * from './constants.js';
export * from './errors.js';
export * from './op.js';
export * from './parser.js';
export * from './status.js';
export * from './urb.js';
