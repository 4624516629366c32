export type { LimitAlgorithm, LimitSample, LimitState } from './types.js';
export { aimd, aimdUpdate, type AimdLimit, type AimdOptions, type AimdSettings, type AimdState } from './aimd.js';
export { vegas, vegasUpdate, type VegasLimit, type VegasOptions, type VegasSettings, type VegasState } from './vegas.js';
export { gradient2, gradient2Update, type Gradient2Limit, type Gradient2Options, type Gradient2Settings, type Gradient2State } from './gradient2.js';
