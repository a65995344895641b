#!/usr/bin/env node
// Opt-in: installs onnxruntime's CUDA execution provider for lorascope's engine.
//
// The npm package of onnxruntime-node ships the CPU provider only; its own install script
// (node_modules/onnxruntime-node/script/install.js) downloads the CUDA provider libraries
// (libonnxruntime_providers_cuda.so, libonnxruntime_providers_shared.so,
// libonnxruntime_providers_tensorrt.so) from the Microsoft.ML.OnnxRuntime.Gpu.Linux NuGet package
// on api.nuget.org into the folder next to onnxruntime_binding.node. This project disables that
// script at install time (package.json "allowScripts"), so CPU-only machines never download
// ~hundreds of MB. Run this on a machine with internet access:
//
//   npm run install-cuda            # download and install
//   npm run install-cuda -- --dry-run
//
// Then the CUDA 12 runtime libraries the provider links against (libcudart, libcublas,
// libcublasLt, cuDNN 9, …) and an NVIDIA driver
// must be findable by the dynamic loader (ldconfig or LD_LIBRARY_PATH). `lorascope --device cuda`
// checks all of this before asking onnxruntime for CUDA and names whatever is missing.
// Proxies: set GLOBAL_AGENT_HTTPS_PROXY (onnxruntime's script uses global-agent).
import {spawnSync} from 'node:child_process';
import {existsSync, readdirSync} from 'node:fs';
import {createRequire} from 'node:module';
import path from 'node:path';
import process from 'node:process';
import {fileURLToPath, pathToFileURL} from 'node:url';

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
	console.log('usage: npm run install-cuda [-- --dry-run]\nDownloads onnxruntime\'s CUDA 12 provider from nuget.org into node_modules/onnxruntime-node.');
	process.exit(0);
}

const dryRun = args.includes('--dry-run');
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'package.json'));

let packageRoot;
try {
	packageRoot = path.dirname(require.resolve('onnxruntime-node/package.json'));
} catch {
	console.error('onnxruntime-node is not installed: run npm install first.');
	process.exit(1);
}

const {version} = require('onnxruntime-node/package.json');
if (process.platform !== 'linux' || process.arch !== 'x64') {
	console.error(`onnxruntime-node ${version} publishes CUDA provider binaries for linux/x64 only (this is ${process.platform}/${process.arch}).`);
	process.exit(1);
}

const installScript = path.join(packageRoot, 'script', 'install.js');
const binFolder = path.join(packageRoot, 'bin', 'napi-v6', process.platform, process.arch);
if (!existsSync(installScript)) {
	console.error(`${installScript} is missing: reinstall onnxruntime-node.`);
	process.exit(1);
}

console.log(`onnxruntime-node ${version} at ${packageRoot}`);
console.log(`running: ONNXRUNTIME_NODE_INSTALL=cuda12 ${process.execPath} ${installScript}`);
console.log(`  downloads Microsoft.ML.OnnxRuntime.Gpu.Linux ${version} from https://api.nuget.org and extracts the CUDA provider into`);
console.log(`  ${binFolder}`);
if (dryRun) {
	console.log('(dry run: nothing downloaded)');
	process.exit(0);
}

// The flag value names the manifest in onnxruntime-node's install-metadata.js ('cuda12' on linux/x64).
const result = spawnSync(process.execPath, [installScript, '--onnxruntime-node-install=cuda12'], {
	cwd: packageRoot,
	stdio: 'inherit',
	env: {...process.env, ONNXRUNTIME_NODE_INSTALL: 'cuda12'},
});
if (result.status !== 0) {
	console.error(`onnxruntime's install script failed (exit ${result.status ?? result.signal}).`);
	process.exit(result.status ?? 1);
}

console.log(`\nprovider folder now holds: ${readdirSync(binFolder).join(', ')}`);

// Report what the engine will see, when the project is built.
const deviceModule = path.join(root, 'build', 'engine', 'device.js');
if (existsSync(deviceModule)) {
	const {checkCuda} = await import(pathToFileURL(deviceModule).href);
	const check = checkCuda();
	console.log(check.available ? `CUDA ready: ${check.reason}. Use --device cuda (or auto).` : `CUDA not usable yet: ${check.reason}`);
} else {
	console.log('Build the project (npm run build) and run lorascope with --device cuda to check the CUDA libraries.');
}
