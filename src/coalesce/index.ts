export { CoalescePolicy, coalesce, type CoalesceOptions, type FlightAbandonedEvent } from './coalesce.js';
