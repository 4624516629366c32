// `bulwark/http`: the framework-neutral server core and the node:http adapter.
// Fastify and Express adapters have their own entry points (`bulwark/fastify`, `bulwark/express`).
export * from './core/index.js';
export { bulwarkHandler, bulwarkContext, readBody, readJson, type BulwarkNodeHandler, type BulwarkNodeOptions, type ReadBodyOptions } from './node.js';
export { nodeResponseChannel, nodeRequestView, sendNodeResponse, contextOf, holdNodeResponse, HeldResponse } from './core/node-io.js';
