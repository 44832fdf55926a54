export * from './codec.js';
export * from './constants.js';
export * from './errors.js';
export * from './filter.js';
export * from './negotiation.js';
export * from './packets.js';
export * from './parser.js';
export { checkTypeAndDirection, mayCarryData, typeHeaderSize, verifyTypeHeader } from './rules.js';
export * from './status.js';
