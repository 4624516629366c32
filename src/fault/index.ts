export {
  FaultInjectionPolicy, faultInjection, FaultInjectedError, connectionResetError,
  type Fault, type LatencyFault, type ErrorFault, type AbortFault, type TimeoutFault, type ResultFault,
  type FaultInjectionOptions, type FaultInjectionStats, type FaultInjectedEvent,
} from './fault.js';
export * as distributions from './distributions.js';
export type { Distribution } from './distributions.js';
