"""The Anthropic Messages API and the OpenAI Chat Completions API over the same bridge: request
and response shapes, the mapping of a resent history onto a Claude Code conversation, the
translation of a run's stream into the API's events, and the Starlette endpoints. Imports the
bridge, state and config layers; `web` mounts its routes."""
