# Sourced by tests/demo.sh and tests/bench.sh (which set $here to tests/):
# makes the current directory a git repository with one empty commit and a
# rasen.yml that drives the scripted agent. $1 names the committer.
scripted_project() {
  agent_dir="$here/agent"
  git init -q && git config user.name "$1" && git config user.email "$1@example.com"
  git commit -q --allow-empty -m "empty project"
  cat > rasen.yml <<YAML
orchestrator:
  session_delay_seconds: 0
agent:
  backend: command
  command: $agent_dir/scripted-agent
review:
  enabled: false
qa:
  enabled: false
YAML
}
