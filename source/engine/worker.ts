// The engine process (child_process.fork of this file): IPC ↔ EngineServer. It never writes to
// stdout/stderr itself: console.* become log events, and whatever native code prints lands on
// pipes the client turns into log events too.
import process from 'node:process';
import {format} from 'node:util';
import {isDevicePreference} from './device.js';
import type {EngineEvent, EngineRequest, LogLevel} from './protocol.js';
import {EngineServer} from './server.js';
import './jobs/index.js';

const send = (event: EngineEvent) => process.send?.(event);
const consoleMethods = globalThis.console as unknown as Record<string, (...args: unknown[]) => void>;
for (const [method, level] of [['log', 'info'], ['info', 'info'], ['debug', 'debug'], ['warn', 'warn'], ['error', 'error'], ['trace', 'debug']] as const) {
	consoleMethods[method] = (...args: unknown[]) => send({type: 'log', level: level satisfies LogLevel, message: format(...args)});
}

process.on('unhandledRejection', reason => send({type: 'log', level: 'error', message: `unhandled rejection: ${format(reason)}`}));
const preference = process.argv[process.argv.indexOf('--device') + 1];
const server = new EngineServer(send, {device: isDevicePreference(preference) ? preference : 'auto', onShutdown: () => process.exit(0)});
process.on('message', message => server.handle(message as EngineRequest));
process.on('disconnect', () => process.exit(0));
// Ctrl+C in the terminal reaches the whole process group; the client decides what to cancel,
// so the engine must not die mid-write on the user's SIGINT (it exits when the IPC channel closes).
process.on('SIGINT', () => undefined);
