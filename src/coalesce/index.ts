export { CoalescePolicy, coalesce, type CoalesceOptions, type CoalesceStats, type FlightAbandonedEvent } from './coalesce.js';
