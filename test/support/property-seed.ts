// Loaded before every test file (scripts/test.mjs): property tests without a seed of their own
// draw from one fixed seed, so `npm test` is the same run on every machine. To explore other
// cases, set BULWARK_PROPERTY_SEED (a failure prints the seed and path that reproduce it).
import fc from 'fast-check';

fc.configureGlobal({ seed: Number(process.env.BULWARK_PROPERTY_SEED ?? 20261206) });
