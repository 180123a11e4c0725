"""Local emulators of the provider APIs, and the framework they share.

`base` (the `Sandbox` app base and its request pipeline), `clock` (scaled sandbox time),
`limits` (rate and concurrency limits in each provider's headers and 429 bodies), `faults`
(the fault queue), `request_log`, `generate` (deterministic fake records), `registry`
(sandboxes by name, `main_sandbox`), `server` (serve an app on loopback); one module per
provider beside them, e.g. `selfcheck`.
"""
