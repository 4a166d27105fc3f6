//! What each observation of the catalogue is, in words: the subject of an evidence line's or a
//! symptom's sentence (`"error" lines per minute in the backend's log: 7 (needs above 1)`).
//!
//! One table per language, by catalogue name. A phrase's `{placeholders}` are the observation's
//! labels (`{handler}`, `{page}`, `{pattern}`, `{var}`, …) and `{of}`, whose it is when the
//! observation is about a `container` or a `role` ([`Text::of_role`](super::Text::of_role)…), so
//! the labels are woven into the sentence. The tests hold that each language has exactly one phrase
//! per catalogue name, that both use the same placeholders, and that each placeholder is a label of
//! the observation (or `{of}` for one with `container` or `role`).

/// English.
pub(super) const EN: &[(&str, &str)] = &[
    ("prometheus.p95_seconds", "p95 latency on {handler}"),
    (
        "prometheus.slow_share",
        "share of requests on {handler} slower than the threshold",
    ),
    (
        "prometheus.slow_share_short",
        "share of requests on {handler} slower than the threshold, over the short window",
    ),
    (
        "prometheus.error_ratio_short",
        "share of requests answered 5xx, over the short window",
    ),
    (
        "prometheus.auth_failure_ratio_short",
        "share of requests refused 401/403, over the short window",
    ),
    (
        "prometheus.handler_slow_share",
        "share of {handler}'s requests above its histogram's top bucket",
    ),
    ("doctor.rule_blind", "what keeps rule {rule} from firing"),
    (
        "prometheus.blind_spot",
        "what keeps {obs} from being seen ({reason})",
    ),
    ("prometheus.error_ratio", "share of requests answered 5xx"),
    (
        "prometheus.auth_failure_ratio",
        "share of requests refused 401/403",
    ),
    ("prometheus.auth_exact", "401/403 counted exactly"),
    ("prometheus.request_rate", "requests per second now"),
    (
        "prometheus.request_rate_baseline",
        "usual requests per second (baseline)",
    ),
    (
        "prometheus.request_rate_ratio",
        "request rate against its baseline",
    ),
    (
        "prometheus.backend_up",
        "Prometheus scrapes the backend ({instance})",
    ),
    ("status.indicator", "the {page} status page's indicator"),
    ("status.description", "the {page} status page's description"),
    (
        "status.latency_seconds",
        "time to fetch the {page} status page",
    ),
    ("supabase.auth_ok", "Supabase Auth's health check answers"),
    (
        "supabase.auth_status",
        "HTTP status of Supabase Auth's health check",
    ),
    (
        "supabase.auth_latency_seconds",
        "Supabase Auth's health check response time",
    ),
    ("supabase.rest_ok", "Supabase REST answers"),
    ("supabase.rest_status", "HTTP status of Supabase REST"),
    (
        "supabase.rest_latency_seconds",
        "Supabase REST response time",
    ),
    ("redis.ping_seconds", "Redis PING round trip"),
    ("redis.used_memory_bytes", "Redis memory in use"),
    ("redis.maxmemory_bytes", "Redis maxmemory"),
    (
        "redis.memory_ratio",
        "Redis memory in use against maxmemory",
    ),
    (
        "redis.evicted_keys_per_minute",
        "Redis keys evicted per minute",
    ),
    (
        "redis.rejected_connections_per_minute",
        "Redis connections rejected per minute",
    ),
    ("redis.connected_clients", "Redis connected clients"),
    ("redis.blocked_clients", "Redis blocked clients"),
    ("redis.keys", "Redis keys matching {pattern}"),
    (
        "redis.keys_capped",
        "the count of Redis keys matching {pattern} stopped at the scan cap",
    ),
    ("docker.present", "{of} container exists"),
    ("docker.running", "{of} container is running"),
    ("docker.health", "{of} health check"),
    ("docker.exit_code", "{of} last exit code"),
    ("docker.restart_count", "{of} restart count (Docker's)"),
    ("docker.restarts", "{of} recent restarts"),
    ("docker.oom_killed", "{of} recent OOM kill"),
    ("docker.uptime_seconds", "{of} uptime"),
    ("docker.image", "{of} image"),
    ("docker.previous_image", "{of} previous image"),
    ("docker.recent_deploy", "{of} recent deploy"),
    ("docker.memory_bytes", "{of} memory in use"),
    ("docker.memory_limit_bytes", "{of} memory limit"),
    (
        "docker.memory_ratio",
        "{of} memory in use against its limit",
    ),
    ("docker.memory_growth_bytes_per_hour", "{of} memory growth"),
    ("docker.env_present", "{var} set in {of} container"),
    (
        "docker.log_lines_per_minute",
        "\"{pattern}\" lines per minute in {of} log",
    ),
    ("docker.role_containers", "containers matching {of} role"),
    ("docker.replicas", "{of} replicas"),
    ("docker.worst_replica", "{of} replica to look at first"),
    ("sentry.unresolved_issues", "Sentry's unresolved issues"),
    ("sentry.events", "Sentry events over the window"),
    ("sentry.events_per_hour", "Sentry events per hour now"),
    (
        "sentry.events_baseline_per_hour",
        "usual Sentry events per hour (the rest of the day)",
    ),
    (
        "sentry.event_rate_ratio",
        "Sentry's event rate against its baseline",
    ),
    (
        "sentry.new_issues",
        "Sentry issues first seen within the window",
    ),
    (
        "sentry.new_since_release",
        "Sentry issues first seen since the latest release",
    ),
    (
        "sentry.release_age_seconds",
        "age of the latest Sentry release",
    ),
    ("sentry.top_new_issues", "the top new Sentry issues"),
    ("coolify.application", "the Coolify application"),
    ("coolify.deploying", "Coolify is deploying"),
    (
        "coolify.last_status",
        "status of the latest Coolify deployment",
    ),
    (
        "coolify.last_failed",
        "the latest Coolify deployment failed",
    ),
    (
        "coolify.deploy_age_seconds",
        "time since the current Coolify deployment finished",
    ),
    (
        "coolify.current_deployment",
        "the current Coolify deployment",
    ),
    ("coolify.current_commit", "the current deployment's commit"),
    (
        "coolify.previous_deployment",
        "the previous Coolify deployment",
    ),
    (
        "coolify.previous_commit",
        "the previous deployment's commit",
    ),
    (
        "coolify.env_set",
        "{var} set in the app's Coolify configuration",
    ),
    // [openai] and the alert webhook (issue 16).
    ("openai.api.ok", "OpenAI's API answers (GET /v1/models)"),
    ("openai.api.status", "HTTP status of OpenAI's API"),
    (
        "openai.api.latency_seconds",
        "time OpenAI's API takes to answer",
    ),
    (
        "openai.api.error",
        "the error OpenAI's API answers our key with",
    ),
    ("openai.usage.spend_usd", "OpenAI spend this month, in USD"),
    (
        "openai.usage.budget_usd",
        "the monthly OpenAI budget, in USD",
    ),
    (
        "openai.usage.budget_share",
        "share of the monthly OpenAI budget spent",
    ),
    (
        "openai.usage.burn_usd_per_hour",
        "OpenAI spend per hour over the last 24 h, in USD",
    ),
    (
        "openai.usage.hours_to_budget",
        "hours until the OpenAI budget is spent at today's rate",
    ),
    (
        "alerts.firing",
        "Grafana/Alertmanager alerts firing for {section}",
    ),
    (
        "alerts.critical",
        "critical Grafana/Alertmanager alerts firing for {section}",
    ),
    (
        "alerts.stale",
        "firing alerts their sender stopped re-sending",
    ),
    ("alerts.unmatched", "alerts no runbook section takes"),
];

/// Brazilian Portuguese.
pub(super) const PT_BR: &[(&str, &str)] = &[
    ("prometheus.p95_seconds", "latência p95 em {handler}"),
    (
        "prometheus.slow_share",
        "parcela das requisições em {handler} mais lentas que o limite",
    ),
    (
        "prometheus.slow_share_short",
        "parcela das requisições em {handler} mais lentas que o limite, na janela curta",
    ),
    (
        "prometheus.error_ratio_short",
        "parcela das requisições respondidas com 5xx, na janela curta",
    ),
    (
        "prometheus.auth_failure_ratio_short",
        "parcela das requisições recusadas com 401/403, na janela curta",
    ),
    (
        "prometheus.handler_slow_share",
        "parcela das requisições de {handler} acima do maior bucket do histograma",
    ),
    (
        "doctor.rule_blind",
        "o que impede a regra {rule} de disparar",
    ),
    (
        "prometheus.blind_spot",
        "o que impede de ver {obs} ({reason})",
    ),
    (
        "prometheus.error_ratio",
        "parcela das requisições respondidas com 5xx",
    ),
    (
        "prometheus.auth_failure_ratio",
        "parcela das requisições recusadas com 401/403",
    ),
    ("prometheus.auth_exact", "401/403 contados com exatidão"),
    ("prometheus.request_rate", "requisições por segundo agora"),
    (
        "prometheus.request_rate_baseline",
        "requisições por segundo habituais (linha de base)",
    ),
    (
        "prometheus.request_rate_ratio",
        "taxa de requisições frente à linha de base",
    ),
    (
        "prometheus.backend_up",
        "o Prometheus coleta o backend ({instance})",
    ),
    (
        "status.indicator",
        "o indicador da página de status de {page}",
    ),
    (
        "status.description",
        "a descrição da página de status de {page}",
    ),
    (
        "status.latency_seconds",
        "tempo para buscar a página de status de {page}",
    ),
    (
        "supabase.auth_ok",
        "o health check do Supabase Auth responde",
    ),
    (
        "supabase.auth_status",
        "status HTTP do health check do Supabase Auth",
    ),
    (
        "supabase.auth_latency_seconds",
        "tempo de resposta do health check do Supabase Auth",
    ),
    ("supabase.rest_ok", "o REST do Supabase responde"),
    ("supabase.rest_status", "status HTTP do REST do Supabase"),
    (
        "supabase.rest_latency_seconds",
        "tempo de resposta do REST do Supabase",
    ),
    (
        "redis.ping_seconds",
        "tempo de ida e volta do PING no Redis",
    ),
    ("redis.used_memory_bytes", "memória em uso no Redis"),
    ("redis.maxmemory_bytes", "maxmemory do Redis"),
    (
        "redis.memory_ratio",
        "memória em uso no Redis frente ao maxmemory",
    ),
    (
        "redis.evicted_keys_per_minute",
        "chaves despejadas por minuto no Redis",
    ),
    (
        "redis.rejected_connections_per_minute",
        "conexões recusadas por minuto no Redis",
    ),
    ("redis.connected_clients", "clientes conectados ao Redis"),
    ("redis.blocked_clients", "clientes bloqueados no Redis"),
    ("redis.keys", "chaves do Redis com o padrão {pattern}"),
    (
        "redis.keys_capped",
        "a contagem de chaves do Redis com o padrão {pattern} parou no limite do SCAN",
    ),
    ("docker.present", "o contêiner {of} existe"),
    ("docker.running", "o contêiner {of} está rodando"),
    ("docker.health", "o health check {of}"),
    ("docker.exit_code", "o último código de saída {of}"),
    (
        "docker.restart_count",
        "a contagem de reinícios {of} (a do Docker)",
    ),
    ("docker.restarts", "reinícios recentes {of}"),
    ("docker.oom_killed", "morte recente por OOM {of}"),
    ("docker.uptime_seconds", "tempo no ar {of}"),
    ("docker.image", "a imagem {of}"),
    ("docker.previous_image", "a imagem anterior {of}"),
    ("docker.recent_deploy", "deploy recente {of}"),
    ("docker.memory_bytes", "memória em uso {of}"),
    ("docker.memory_limit_bytes", "limite de memória {of}"),
    (
        "docker.memory_ratio",
        "memória em uso {of} frente ao limite",
    ),
    (
        "docker.memory_growth_bytes_per_hour",
        "crescimento da memória {of}",
    ),
    ("docker.env_present", "{var} definida no contêiner {of}"),
    (
        "docker.log_lines_per_minute",
        "linhas com \"{pattern}\" por minuto no log {of}",
    ),
    (
        "docker.role_containers",
        "contêineres que correspondem ao papel {of}",
    ),
    ("docker.replicas", "réplicas {of}"),
    ("docker.worst_replica", "a réplica {of} a olhar primeiro"),
    (
        "sentry.unresolved_issues",
        "issues não resolvidas no Sentry",
    ),
    ("sentry.events", "eventos do Sentry na janela"),
    ("sentry.events_per_hour", "eventos do Sentry por hora agora"),
    (
        "sentry.events_baseline_per_hour",
        "eventos do Sentry por hora habituais (o resto do dia)",
    ),
    (
        "sentry.event_rate_ratio",
        "taxa de eventos do Sentry frente à linha de base",
    ),
    (
        "sentry.new_issues",
        "issues do Sentry vistas pela primeira vez na janela",
    ),
    (
        "sentry.new_since_release",
        "issues do Sentry vistas pela primeira vez desde a última release",
    ),
    (
        "sentry.release_age_seconds",
        "idade da última release no Sentry",
    ),
    (
        "sentry.top_new_issues",
        "as principais issues novas do Sentry",
    ),
    ("coolify.application", "a aplicação no Coolify"),
    ("coolify.deploying", "o Coolify está implantando"),
    (
        "coolify.last_status",
        "status da última implantação no Coolify",
    ),
    (
        "coolify.last_failed",
        "a última implantação no Coolify falhou",
    ),
    (
        "coolify.deploy_age_seconds",
        "tempo desde que a implantação atual do Coolify terminou",
    ),
    (
        "coolify.current_deployment",
        "a implantação atual no Coolify",
    ),
    ("coolify.current_commit", "o commit da implantação atual"),
    (
        "coolify.previous_deployment",
        "a implantação anterior no Coolify",
    ),
    (
        "coolify.previous_commit",
        "o commit da implantação anterior",
    ),
    (
        "coolify.env_set",
        "{var} definida na configuração do app no Coolify",
    ),
    // [openai] e o webhook de alertas (issue 16).
    ("openai.api.ok", "a API da OpenAI responde (GET /v1/models)"),
    ("openai.api.status", "status HTTP da API da OpenAI"),
    (
        "openai.api.latency_seconds",
        "tempo de resposta da API da OpenAI",
    ),
    (
        "openai.api.error",
        "o erro com que a API da OpenAI responde à nossa chave",
    ),
    (
        "openai.usage.spend_usd",
        "gasto com a OpenAI neste mês, em USD",
    ),
    (
        "openai.usage.budget_usd",
        "o orçamento mensal da OpenAI, em USD",
    ),
    (
        "openai.usage.budget_share",
        "parcela gasta do orçamento mensal da OpenAI",
    ),
    (
        "openai.usage.burn_usd_per_hour",
        "gasto com a OpenAI por hora nas últimas 24 h, em USD",
    ),
    (
        "openai.usage.hours_to_budget",
        "horas até o orçamento da OpenAI se esgotar no ritmo de hoje",
    ),
    (
        "alerts.firing",
        "alertas do Grafana/Alertmanager disparados para {section}",
    ),
    (
        "alerts.critical",
        "alertas críticos do Grafana/Alertmanager disparados para {section}",
    ),
    (
        "alerts.stale",
        "alertas disparados que o remetente deixou de reenviar",
    ),
    (
        "alerts.unmatched",
        "alertas que nenhuma seção do runbook aceita",
    ),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::locale::{Locale, placeholders};
    use crate::observe::{CATALOGUE, SUBJECT_LABELS};

    /// A language cannot lack a phrase: every catalogue name has exactly one in each, no phrase
    /// names something the catalogue lacks, and the placeholders are the observation's labels.
    #[test]
    fn every_catalogue_observation_has_one_phrase_per_language_with_its_labels() {
        for locale in Locale::ALL {
            let table = locale.text().observations;
            let names: BTreeSet<&str> = table.iter().map(|(n, _)| *n).collect();
            assert_eq!(names.len(), table.len(), "{locale:?}: a name twice");
            let catalogue: BTreeSet<&str> = CATALOGUE.iter().map(|s| s.name).collect();
            assert_eq!(names, catalogue, "{locale:?}");
            for spec in CATALOGUE {
                let phrase = table
                    .iter()
                    .find(|(n, _)| *n == spec.name)
                    .expect("above")
                    .1;
                for p in placeholders(phrase) {
                    let about = spec.labels.iter().any(|l| SUBJECT_LABELS.contains(l));
                    assert!(
                        spec.labels.contains(&p) || (p == "of" && about),
                        "{locale:?}: {}: {{{p}}} is not a label of it",
                        spec.name
                    );
                }
            }
        }
        for ((n, en), (m, pt)) in EN.iter().zip(PT_BR) {
            assert_eq!(n, m, "the tables keep the same order");
            let (mut a, mut b) = (placeholders(en), placeholders(pt));
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "{n}");
        }
    }
}
