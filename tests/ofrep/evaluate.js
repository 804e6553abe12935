// Evaluates flags through the OpenFeature project's Node server SDK and its
// OFREP provider against an abexp-server, for tests/ofrep_e2e_test.cc.
//
// Usage: node evaluate.js BASE_URL REQUEST_FILE
// REQUEST_FILE: {"flags": [{"key": "k", "type": "bool|number|string|json"}],
//                "units": [{context...}], "token": "..." (optional)}
// Prints one JSON object: {"evaluations": [[unit index, flag key, value,
// reason, variant, errorCode or null], ...], "errors": {case: details}}
// where the error cases are an unknown flag, a wrong type and a missing
// targeting key, each evaluated the way an application would.
'use strict';
const fs = require('fs');
const { OpenFeature } = require('@openfeature/server-sdk');
const { OFREPProvider } = require('@openfeature/ofrep-provider');

// The typed getter and a default of the flag's type, as an application
// would call them.
function getter(client, type) {
  switch (type) {
    case 'bool': return [client.getBooleanDetails.bind(client), false];
    case 'number': return [client.getNumberDetails.bind(client), -1];
    case 'string': return [client.getStringDetails.bind(client), '<default>'];
    default: return [client.getObjectDetails.bind(client), { default: true }];
  }
}

async function main() {
  const [baseUrl, requestFile] = process.argv.slice(2);
  const request = JSON.parse(fs.readFileSync(requestFile, 'utf8'));
  const headers = request.token ? [['Authorization', `Bearer ${request.token}`]] : [];
  await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl, headers }));
  const client = OpenFeature.getClient();

  const evaluations = [];
  for (let u = 0; u < request.units.length; ++u) {
    for (const flag of request.flags) {
      const [get, fallback] = getter(client, flag.type);
      const d = await get(flag.key, fallback, request.units[u]);
      evaluations.push([u, flag.key, d.value, d.reason, d.variant ?? null,
                        d.errorCode ?? null]);
    }
  }

  const unit = request.units[0];
  const details = (d) => ({ value: d.value, errorCode: d.errorCode ?? null,
                            reason: d.reason });
  const errors = {
    unknownFlag: details(await client.getBooleanDetails('no_such_flag', true, unit)),
    wrongType: details(await client.getNumberDetails(
        request.flags.find((f) => f.type === 'bool').key, 42, unit)),
    missingTargetingKey: details(await client.getBooleanDetails(
        request.flags[0].key, true, { country: 'SG' })),
  };
  process.stdout.write(JSON.stringify({ evaluations, errors }));
  await OpenFeature.close();
}

main().catch((e) => {
  process.stderr.write(`evaluate.js: ${e.stack || e}\n`);
  process.exit(1);
});
