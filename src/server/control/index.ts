export {
  type ControlAddress,
  ControlAddressError,
  checkControlAddress,
  defaultControlPath,
  describeControlAddress,
  isLoopback,
} from './address.js';
export { type DeviceSummary, route } from './routes.js';
export {
  type DetachOutcome,
  describeHold,
  detachAllForStop,
  type Hold,
  holdOf,
  holdsIn,
  NOTICE_GRACE_MS,
  safeDetach,
} from './safe-detach.js';
export { ControlInUseError, ControlServer, MAX_BODY_BYTES, socketAnswers } from './server.js';
