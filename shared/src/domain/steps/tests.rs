//! Tests of whole documents and plans: the seed examples, every type together, round trips,
//! ordering, and errors across steps. Tests of one type live in its file.

use super::test_support::*;
use super::*;

#[test]
fn seed_examples_are_accepted_verbatim() {
    let one = plan(SEED_1);
    assert!(one.warnings.is_empty(), "{:?}", one.warnings);
    let [step] = one.steps.as_slice() else { panic!("one step expected") };
    assert_eq!((step.order, step.on_failure, step.kind()), (10, OnFailure::Abort, StepKind::AgentSecretSync));
    let StepConfig::AgentSecretSync(c) = &step.config else { panic!("{step:?}") };
    assert_eq!(c.agent, AgentTarget::Agent(agent()));
    assert_eq!(c.target_path, r"C:\inetpub\app\appsettings.json");
    assert_eq!(c.key_path(), ["Entra", "ClientSecret"]);
    assert_eq!(c.file_format, FileFormat::Json);
    assert_eq!((c.create_if_missing, c.backup), (false, true));

    let two = plan(SEED_2);
    assert!(two.warnings.is_empty(), "{:?}", two.warnings);
    let kinds: Vec<StepKind> = two.steps.iter().map(StepDefinition::kind).collect();
    assert_eq!(kinds, [StepKind::AgentSecretSync, StepKind::IisRecycle]);
    let StepConfig::IisRecycle(iis) = &two.steps[1].config else { panic!() };
    assert_eq!((iis.app_pool.as_str(), iis.mode), ("DefaultAppPool", RecycleMode::Recycle));
    assert_eq!(two.steps[1].on_failure, OnFailure::Continue);
    assert_eq!(two.steps[1].agent(), Some(&AgentTarget::Agent(agent())));
}

#[test]
fn every_step_type_parses_with_all_its_options() {
    let p = plan(ALL_OPTIONS);
    assert_eq!(p.steps.iter().map(StepDefinition::kind).collect::<Vec<_>>(), StepKind::ALL);
    assert!(p.warnings.is_empty(), "{:#?}", p.warnings);
    let [kv, k8s, sync, own, iis, spring, app, health, hook] = p.steps.as_slice() else { panic!() };
    let StepConfig::RotatorOwnSecret(c) = &own.config else { panic!() };
    assert_eq!(c.integration.as_str(), "payroll");

    assert_eq!(kv.name.as_deref(), Some("Publish to both vaults"));
    assert_eq!((kv.retries, kv.retry_delay), (5, Span::from_secs(60)));
    let StepConfig::AzureKeyVault(c) = &kv.config else { panic!() };
    assert_eq!(c.vault_url.as_str(), "https://kv-payroll.vault.azure.net/");
    assert_eq!(c.secret_name, "AzureAdClientSecret");
    let second = c.secondary.as_ref().expect("secondary vault");
    assert_eq!(second.vault_url.host_str(), Some("kv-payroll-dr.vault.azure.net"));
    assert_eq!(second.secret_name, "AzureAdClientSecret-dr");
    assert_eq!(c.content_type, "application/x-entra-client-secret");
    assert_eq!(c.tags.get("owner").map(String::as_str), Some("payroll"));

    let StepConfig::KubernetesSecret(c) = &k8s.config else { panic!() };
    assert_eq!(
        (c.namespace.as_str(), c.secret_name.as_str(), c.key.as_str()),
        ("payroll", "payroll-api.entra", "AZURE_CLIENT_SECRET")
    );
    assert_eq!(c.context.as_deref(), Some("aks-prod-westeurope"));
    let kinds: Vec<WorkloadKind> = c.restart.iter().map(|w| w.kind).collect();
    assert_eq!(kinds, [WorkloadKind::Deployment, WorkloadKind::StatefulSet, WorkloadKind::DaemonSet]);

    let StepConfig::AgentSecretSync(c) = &sync.config else { panic!() };
    assert_eq!((c.create_if_missing, c.backup), (true, false));

    let StepConfig::IisRecycle(c) = &iis.config else { panic!() };
    assert_eq!(c.mode, RecycleMode::Restart);

    let StepConfig::SpringActuatorRefresh(c) = &spring.config else { panic!() };
    assert_eq!(c.bearer_token_env.as_deref(), Some("ORDERS_ACTUATOR_TOKEN"));
    assert_eq!(c.timeout, Span::from_secs(45));

    let StepConfig::AzureAppServiceRestart(c) = &app.config else { panic!() };
    assert_eq!(c.subscription_id.to_string(), "33333333-3333-3333-3333-333333333333");
    assert_eq!(
        (c.resource_group.as_str(), c.app_name.as_str(), c.slot.as_deref()),
        ("rg-payroll", "payroll-api", Some("staging"))
    );
    assert_eq!((c.mode, c.refresh_key_vault_references), (RestartMode::StopStart, false));

    let StepConfig::HttpHealthCheck(c) = &health.config else { panic!() };
    assert_eq!((c.expected_status, c.timeout, c.interval), (204, Span::from_secs(180), Span::from_secs(10)));
    assert_eq!(c.contains.as_deref(), Some("Healthy"));

    let StepConfig::Webhook(c) = &hook.config else { panic!() };
    assert_eq!(c.signing_secret_env.as_deref(), Some("ROTATION_WEBHOOK_KEY"));
    assert_eq!(c.headers.get("X-Team").map(String::as_str), Some("payroll"));
    assert_eq!(c.events, ["rotation.completed", "rotation.failed"]);
}

#[test]
fn defaults_are_filled_in_when_left_out() {
    let json = array(&[
        r#"{"type": "azure_key_vault", "order": 1, "config": {"vault_url": "https://kv.vault.azure.net", "secret_name": "s",
            "secondary_vault_url": "https://kv2.vault.azure.net"}}"#
            .to_owned(),
        r#"{"type": "azure_app_service_restart", "order": 2,
            "config": {"subscription_id": "33333333-3333-3333-3333-333333333333", "resource_group": "rg", "app_name": "app"}}"#
            .to_owned(),
        r#"{"type": "http_health_check", "order": 3, "config": {"url": "https://app.example.com/health"}}"#.to_owned(),
        r#"{"type": "spring_actuator_refresh", "order": 0, "config": {"url": "http://app:8080/actuator/refresh"}}"#.to_owned(),
    ]);
    let p = plan(&json);
    let [spring, kv, app, health] = p.steps.as_slice() else { panic!() };
    assert_eq!((kv.on_failure, kv.retries, kv.retry_delay), (OnFailure::Abort, DEFAULT_RETRIES, DEFAULT_RETRY_DELAY));
    let StepConfig::AzureKeyVault(c) = &kv.config else { panic!() };
    assert_eq!(c.content_type, "text/plain");
    assert_eq!(
        c.secondary.as_ref().map(|s| s.secret_name.as_str()),
        Some("s"),
        "secondary name defaults to the primary's"
    );
    let StepConfig::AzureAppServiceRestart(c) = &app.config else { panic!() };
    assert_eq!((c.mode, c.refresh_key_vault_references, c.slot.as_deref()), (RestartMode::Restart, true, None));
    let StepConfig::HttpHealthCheck(c) = &health.config else { panic!() };
    assert_eq!((c.expected_status, c.timeout, c.interval), (200, Span::from_secs(120), Span::from_secs(5)));
    let StepConfig::SpringActuatorRefresh(c) = &spring.config else { panic!() };
    assert_eq!((c.timeout, c.bearer_token_env.as_deref()), (Span::from_secs(30), None));
}

#[test]
fn the_normalised_form_round_trips_for_every_type() {
    for json in [SEED_1, SEED_2, ALL_OPTIONS] {
        let first = plan(json);
        let normalised = serde_json::to_string_pretty(&first.steps).expect("serialises");
        let again = plan(&normalised);
        assert_eq!(again.steps, first.steps, "{normalised}");
        // And the normalised form is stable.
        assert_eq!(serde_json::to_string_pretty(&again.steps).expect("serialises"), normalised);
    }
    let normalised = serde_json::to_value(&plan(SEED_2).steps).expect("serialises");
    assert_eq!(normalised[1]["type"], "iis_recycle");
    assert_eq!(normalised[1]["agent_id"], AGENT);
    assert_eq!(normalised[1]["on_failure"], "continue");
    assert_eq!(normalised[1]["config"]["app_pool"], "DefaultAppPool");
    assert_eq!(normalised[1]["config"]["mode"], "recycle");
    assert_eq!(normalised[0]["retry_delay"], "30s");
    assert_eq!(normalised[0]["config"]["target_path"], r"C:\inetpub\app\appsettings.json");
    assert!(normalised[0]["config"].get("agent_id").is_none(), "the agent stays at the top level");
}

#[test]
fn step_definition_deserialises_only_through_the_same_checks() {
    let good: serde_json::Value = serde_json::from_str(&sync_step(10, AGENT)).expect("json");
    let step: StepDefinition = serde_json::from_value(good).expect("valid step");
    assert_eq!(step.kind(), StepKind::AgentSecretSync);
    let typo = sync_step(10, AGENT).replace("target_path", "targt_path");
    let err = serde_json::from_str::<StepDefinition>(&typo).expect_err("unknown field");
    assert!(err.to_string().contains("config.targt_path: unknown field; did you mean `target_path`?"), "{err}");
}

#[test]
fn unknown_type_lists_the_known_ones() {
    let e = errors(
        r#"[{"type": "iis_recycel", "order": 10, "config": {}}, {"type": "ftp_upload", "order": 20, "config": {}}]"#,
    );
    let first = issue(&e[..1], "type");
    assert!(matches!(first.step, StepRef { index: Some(0), order: Some(10), kind: None }));
    assert!(
        first.message.contains("unknown step type `iis_recycel`; did you mean `iis_recycle`?"),
        "{}",
        first.message
    );
    assert!(e[1].message.contains("known: azure_key_vault, kubernetes_secret, agent_secret_sync"), "{}", e[1].message);
    assert_eq!(e[1].step.index, Some(1));
}

#[test]
fn unknown_top_level_field_is_named_and_suggested() {
    let e = errors(&array(&[sync_step(10, AGENT).replace("on_failure\"", "x\"").replace("\"order\"", "\"ordre\"")]));
    let i = issue(&e, "ordre");
    assert_eq!((i.step.index, i.severity), (Some(0), Severity::Error));
    assert!(i.message.starts_with("unknown field; did you mean `order`?"), "{}", i.message);
    let e = errors(&array(&[sync_step(10, AGENT).replace("\"order\"", "\"color\": 1, \"order\"")]));
    assert!(issue(&e, "color").message.contains("expected one of type, name, order, on_failure"), "{e:?}");
}

#[test]
fn typo_in_config_field_names_step_and_field_and_suggests() {
    let json = SEED_1.replace("\"target_path\"", "\"targt_path\"");
    let e = errors(&json);
    let i = issue(&e, "config.targt_path");
    assert!(matches!(i.step, StepRef { index: Some(0), order: Some(10), kind: Some(StepKind::AgentSecretSync) }));
    assert_eq!(
        i.to_string(),
        "step #1 (order 10, agent_secret_sync): config.targt_path: unknown field; did you mean `target_path`?"
    );
    // The missing required field is reported too, in the same run.
    assert_eq!(issue(&e, "config.target_path").message, "missing");
    let far = SEED_1.replace("\"file_format\": \"json\"", "\"file_format\": \"json\", \"encoding\": \"utf-8\"");
    let i = issue(&errors(&far), "config.encoding").clone();
    assert!(
        i.message.contains("expected one of target_path, secret_key, file_format, create_if_missing, backup"),
        "{i}"
    );
}

#[test]
fn fields_on_the_wrong_level_are_pointed_to_the_right_one() {
    let json = r#"[{"type": "iis_recycle", "order": 1, "app_pool": "P", "config": {"agent_id": "11111111-1111-1111-1111-111111111111"}}]"#;
    let e = errors(json);
    assert!(issue(&e, "app_pool").message.contains("belongs inside `config`"), "{e:?}");
    assert!(issue(&e, "config.agent_id").message.contains("belongs at the top level"), "{e:?}");
}

#[test]
fn missing_required_field_is_named() {
    let json = SEED_1.replace("\"secret_key\": \"Entra:ClientSecret\",", "");
    let e = errors(&json);
    let i = issue(&e, "config.secret_key");
    assert_eq!(i.to_string(), "step #1 (order 10, agent_secret_sync): config.secret_key: missing");
    let e = errors(r#"[{"type": "webhook", "config": {"url": "https://hooks.example.com/x"}}]"#);
    assert_eq!(issue(&e, "order").message, "missing");
    let e = errors(r#"[{"type": "webhook", "order": 1}]"#);
    assert_eq!(issue(&e, "config").message, "missing");
    let e = errors(r#"[{"order": 1, "config": {}}]"#);
    assert!(issue(&e, "type").message.starts_with("missing; one of azure_key_vault"), "{e:?}");
    let e = errors(r#"[{"type": "iis_recycle", "order": 1, "config": {"app_pool": "P"}}]"#);
    assert!(issue(&e, "agent_id").message.starts_with("missing"), "{e:?}");
}

#[test]
fn wrong_json_type_names_the_field_and_both_types() {
    let json = r#"[{"type": "http_health_check", "order": "10", "on_failure": true,
        "config": {"url": 5, "expected_status": "200", "timeout": 30, "contains": ["x"]}}]"#;
    let e = errors(json);
    assert_eq!(issue(&e, "order").message, "expected a whole number, got a string");
    assert_eq!(issue(&e, "on_failure").message, "expected a string, got a boolean");
    assert_eq!(issue(&e, "config.url").message, "expected a string, got a number");
    assert_eq!(issue(&e, "config.expected_status").message, "expected a whole number, got a string");
    assert!(issue(&e, "config.timeout").message.starts_with("expected a duration"), "{e:?}");
    assert_eq!(issue(&e, "config.contains").message, "expected a string, got an array");
    assert!(e.iter().all(|i| i.step.index == Some(0) && i.severity == Severity::Error));
    let e = errors(r#"[{"type": "webhook", "order": -1, "config": "https://hooks.example.com"}]"#);
    assert!(issue(&e, "order").message.contains("from 0 to 4294967295, got -1"), "{e:?}");
    assert_eq!(issue(&e, "config").message, "expected an object, got a string");
    let e = errors(r#"[42]"#);
    assert!(e[0].message.contains("expected a step object") && e[0].message.ends_with("got a number"), "{e:?}");
}

#[test]
fn duplicate_order_names_both_steps() {
    let e = errors(&array(&[sync_step(10, AGENT), simple_step("webhook", 20), iis_step(10, AGENT)]));
    let i = issue(&e, "order");
    assert_eq!((i.step.index, i.step.order, i.severity), (Some(2), Some(10), Severity::Error));
    assert!(
        i.to_string().starts_with(
            "step #3 (order 10, iis_recycle): order: 10 is also the order of step #1 (order 10, agent_secret_sync)"
        ),
        "{i}"
    );
}

#[test]
fn a_document_that_is_not_an_array_is_refused() {
    let e = errors(r#"{"type": "webhook", "order": 1}"#);
    assert_eq!(e.len(), 1);
    assert!(matches!(
        &e[0],
        StepIssue { step: StepRef { index: None, .. }, field: None, severity: Severity::Error, .. }
    ));
    assert!(e[0].to_string().starts_with("steps: expected a JSON array of step objects"), "{}", e[0]);
    assert!(e[0].message.ends_with("got an object"));
    let e = errors("[{\"type\": ");
    assert!(e[0].message.starts_with("not valid JSON"), "{}", e[0]);
}

#[test]
fn an_empty_plan_is_valid_with_a_warning() {
    for p in [plan("[]"), parse_step_values(&[]).expect("valid")] {
        assert!(p.steps.is_empty());
        let [w] = p.warnings.as_slice() else { panic!("{:?}", p.warnings) };
        assert_eq!((w.step.index, w.severity), (None, Severity::Warning));
        assert_eq!(w.to_string(), "steps: no rollout steps: only the Entra secret will change");
    }
}

#[test]
fn all_errors_across_all_steps_are_collected() {
    let json = array(&[
        sync_step(10, AGENT).replace("/etc/app/secrets.env", "secrets.env"),
        simple_step("webhook", 20).replace("\"url\"", "\"ulr\""),
        iis_step(30, "not-a-guid"),
    ]);
    let err = parse_steps(&json).expect_err("three bad steps");
    let indexes: Vec<Option<usize>> = err.0.iter().map(|i| i.step.index).collect();
    assert!(indexes.contains(&Some(0)) && indexes.contains(&Some(1)) && indexes.contains(&Some(2)), "{err}");
    assert!(issue(&err.0, "agent_id").message.contains("GUID of a connected agent"));
    let text = err.to_string();
    assert_eq!(text.lines().count(), err.0.len());
    assert!(text.contains("step #2 (order 20, webhook): config.ulr: unknown field; did you mean `url`?"), "{text}");
}

#[test]
fn steps_are_sorted_by_order_and_issues_keep_input_positions() {
    let p = plan(&array(&[simple_step("webhook", 30), sync_step(5, AGENT), iis_step(20, AGENT)]));
    assert_eq!(p.steps.iter().map(|s| s.order).collect::<Vec<_>>(), [5, 20, 30]);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn reload_before_publish_is_a_warning() {
    let p = plan(&array(&[iis_step(10, AGENT), sync_step(20, AGENT)]));
    let w = issue(&p.warnings, "order");
    assert_eq!((w.step.index, w.step.kind, w.severity), (Some(0), Some(StepKind::IisRecycle), Severity::Warning));
    assert!(w.message.contains("recycles before step #2 (order 20, agent_secret_sync)"), "{w}");

    let p = plan(&array(&[simple_step("spring_actuator_refresh", 10), simple_step("azure_key_vault", 20)]));
    let w = issue(&p.warnings, "order");
    assert_eq!((w.step.index, w.severity), (Some(0), Severity::Warning));
    assert!(w.message.contains("reloads before step #2 (order 20, azure_key_vault)"), "{w}");

    // A file sync on another agent does not make a recycle early, but the recycle has no sync.
    let other = "22222222-2222-2222-2222-222222222222";
    let p = plan(&array(&[iis_step(10, AGENT), sync_step(20, other), sync_step(5, AGENT)]));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn iis_recycle_without_a_file_sync_on_its_agent_is_a_warning() {
    let other = "22222222-2222-2222-2222-222222222222";
    let p = plan(&array(&[sync_step(10, other), iis_step(20, AGENT)]));
    let w = issue(&p.warnings, "agent_id");
    assert_eq!((w.step.index, w.severity), (Some(1), Severity::Warning));
    assert!(w.message.starts_with("no agent_secret_sync step writes the secret on this agent"), "{w}");
}

#[test]
fn webhook_before_a_reload_and_health_check_before_a_publish_are_warnings() {
    let p = plan(&array(&[
        simple_step("webhook", 10),
        simple_step("http_health_check", 20),
        simple_step("azure_key_vault", 30),
        simple_step("spring_actuator_refresh", 40),
    ]));
    let [hook, health] = p.warnings.as_slice() else { panic!("{:#?}", p.warnings) };
    assert_eq!((hook.step.index, hook.step.kind, hook.severity), (Some(0), Some(StepKind::Webhook), Severity::Warning));
    assert!(hook.message.contains("notifies before step #4 (order 40, spring_actuator_refresh)"), "{hook}");
    assert_eq!((health.step.index, health.severity), (Some(1), Severity::Warning));
    assert!(health.message.contains("step #3 (order 30, azure_key_vault), step #4"), "{health}");
}

#[test]
fn legacy_agent_url_is_accepted_for_manual_review() {
    let json =
        SEED_2.replace(&format!("\"agent_id\": \"{AGENT}\""), "\"agent_url\": \"https://web01.corp.example.com:8443\"");
    let p = plan(&json);
    let reviews: Vec<&StepIssue> = p.warnings.iter().filter(|w| w.severity == Severity::ManualReview).collect();
    assert_eq!(reviews.len(), 2, "{:#?}", p.warnings);
    assert_eq!((reviews[0].step.index, reviews[0].field.as_deref()), (Some(0), Some("agent_url")));
    assert!(reviews[0].message.starts_with("legacy direct agent_url cannot be probed automatically"));
    let url = Url::parse("https://web01.corp.example.com:8443").expect("url");
    assert_eq!(p.steps[1].agent(), Some(&AgentTarget::LegacyUrl(url.clone())));
    assert_eq!(p.steps[1].url_fields(), [&url]);
    assert_eq!(
        p.steps[1].display_name(),
        "Recycle IIS app pool DefaultAppPool on agent at web01.corp.example.com:8443"
    );
    // Both targets on one step are refused.
    let both = SEED_1.replace("\"agent_id\"", "\"agent_url\": \"https://web01\", \"agent_id\"");
    assert!(issue(&errors(&both), "agent_url").message.contains("not both"));
}

#[test]
fn an_agent_on_a_step_that_takes_none_is_refused() {
    let json = simple_step("webhook", 10).replace("\"order\"", &format!("\"agent_id\": \"{AGENT}\", \"order\""));
    let e = errors(&array(&[json]));
    assert!(issue(&e, "agent_id").message.starts_with("webhook runs without an agent"), "{e:?}");
}

#[test]
fn retries_and_delays_are_bounded() {
    let step = |extra: &str| array(&[simple_step("webhook", 1).replace("\"order\"", &format!("{extra}, \"order\""))]);
    assert!(issue(&errors(&step("\"retries\": 11")), "retries").message.contains("from 0 to 10"));
    assert!(issue(&errors(&step("\"retry_delay\": \"16m\"")), "retry_delay").message.contains("at most 15m"));
    assert!(issue(&errors(&step("\"retry_delay\": \"30\"")), "retry_delay").message.contains("not a duration"));
    let p = plan(&step("\"retries\": 0, \"retry_delay\": \"0s\", \"on_failure\": \"continue\""));
    assert_eq!(
        (p.steps[0].retries, p.steps[0].retry_delay, p.steps[0].on_failure),
        (0, Span::from_secs(0), OnFailure::Continue)
    );
    assert!(issue(&errors(&step("\"name\": \"  \"")), "name").message.contains("empty"));
}

#[test]
fn kinds_have_their_type_string_and_phase() {
    for kind in StepKind::ALL {
        assert_eq!(StepKind::parse(kind.as_str()), Some(kind));
        assert_eq!(serde_json::to_value(kind).expect("serialises"), kind.as_str());
    }
    let phases: Vec<Phase> = StepKind::ALL.iter().map(|k| k.phase()).collect();
    use Phase::*;
    assert_eq!(phases, [Publish, Publish, Publish, Publish, Reload, Reload, Reload, Verify, Notify]);
    assert!(Phase::Publish < Phase::Reload && Phase::Verify < Phase::Notify);
}

#[test]
fn display_names_say_what_the_step_does() {
    let p = plan(ALL_OPTIONS);
    let names: Vec<String> = p.steps.iter().map(StepDefinition::display_name).collect();
    assert_eq!(
        names,
        [
            "Publish to both vaults",
            "Kubernetes Secret payroll/payroll-api.entra key AZURE_CLIENT_SECRET in aks-prod-westeurope, then \
             restart Deployment/payroll-api, StatefulSet/payroll-worker, DaemonSet/payroll-agent",
            r"Write secret to agent 11111111… C:\inetpub\app\appsettings.json (Entra:ClientSecret)",
            "Store the new secret where integration payroll reads its own",
            "Restart IIS app pool DefaultAppPool on agent 11111111…",
            "Refresh Spring Actuator https://orders.internal.example.com/actuator/refresh",
            "Stop and start App Service payroll-api slot staging in rg-payroll",
            "Wait for https://payroll.example.com/health to answer 204",
            "Webhook to https://hooks.example.com",
        ]
    );
    let mut kv = p.steps[0].clone();
    kv.name = None;
    assert_eq!(kv.display_name(), "Key Vault kv-payroll/AzureAdClientSecret and kv-payroll-dr/AzureAdClientSecret-dr");
    assert_eq!(plan(SEED_2).steps[1].display_name(), "Recycle IIS app pool DefaultAppPool on agent 11111111…");
}

#[test]
fn url_fields_list_every_address_a_step_calls() {
    let p = plan(ALL_OPTIONS);
    let urls: Vec<String> =
        p.steps.iter().flat_map(|s| s.url_fields()).map(|u| u.host_str().unwrap_or("").to_owned()).collect();
    assert_eq!(
        urls,
        [
            "kv-payroll.vault.azure.net",
            "kv-payroll-dr.vault.azure.net",
            "orders.internal.example.com",
            "payroll.example.com",
            "hooks.example.com"
        ]
    );
}

#[test]
fn inline_values_parse_like_a_document() {
    let values: Vec<serde_json::Value> = serde_json::from_str(SEED_2).expect("json");
    assert_eq!(parse_step_values(&values), parse_steps(SEED_2));
}

/// The forms of a forbidden host the hostile test campaign tried, for every URL field of every
/// step type that has one.
const FORBIDDEN_HOSTS: &[&str] = &[
    "169.254.169.254",
    "[::ffff:169.254.169.254]",
    "2852039166",
    "0xA9FEA9FE",
    "0251.0376.0251.0376",
    "169.254.169.254.",
    "0.0.0.0",
    "[::]",
    "[fe80::1]",
    "[fd00:ec2::254]",
    "metadata.google.internal",
    "127.0.0.1",
    "localhost",
];

#[test]
fn a_url_at_a_forbidden_address_is_refused_in_every_field_naming_field_and_rule() {
    let steps: &[(&str, &str)] = &[
        ("webhook", r#"{"type": "webhook", "order": 1, "config": {"url": "https://HOST/hook"}}"#),
        (
            "spring",
            r#"{"type": "spring_actuator_refresh", "order": 1, "config": {"url": "http://HOST/actuator/refresh"}}"#,
        ),
        ("health", r#"{"type": "http_health_check", "order": 1, "config": {"url": "http://HOST/health"}}"#),
        (
            "key vault",
            r#"{"type": "azure_key_vault", "order": 1, "config": {"vault_url": "https://HOST", "secret_name": "s"}}"#,
        ),
        (
            "secondary vault",
            r#"{"type": "azure_key_vault", "order": 1, "config": {"vault_url": "https://kv.vault.azure.net",
                "secret_name": "s", "secondary_vault_url": "https://HOST", "secondary_secret_name": "s2"}}"#,
        ),
        (
            "legacy agent",
            r#"{"type": "iis_recycle", "order": 1, "agent_url": "http://HOST:8080", "config": {"app_pool": "P"}}"#,
        ),
    ];
    let fields =
        ["config.url", "config.url", "config.url", "config.vault_url", "config.secondary_vault_url", "agent_url"];
    for ((what, template), field) in steps.iter().zip(fields) {
        for host in FORBIDDEN_HOSTS {
            let json = array(&[template.replace("HOST", host)]);
            let issues = errors(&json);
            let found = issue(&issues, field);
            assert!(found.message.contains("outbound address policy"), "{what} at {host}: {found}");
            assert!(!found.message.contains("/hook") && !found.message.contains("actuator"), "URL quoted: {found}");
        }
    }
}

#[test]
fn the_configured_allow_list_admits_the_named_host_only() {
    use crate::domain::address::AddressPolicy;
    use crate::domain::steps::parse_steps_with;
    let json = |host: &str| {
        array(&[format!(
            r#"{{"type": "http_health_check", "order": 1, "config": {{"url": "https://{host}:8443/h"}}}}"#
        )])
    };
    let allow = AddressPolicy::new(&["127.0.0.1".to_owned()], &[]).expect("valid");
    assert!(parse_steps_with(&json("127.0.0.1"), &allow).is_ok());
    assert!(parse_steps_with(&json("169.254.169.254"), &allow).is_err());
    assert!(parse_steps(&json("127.0.0.1")).is_err(), "the default policy refuses loopback");
    assert!(parse_steps(&json("10.1.2.3")).is_ok(), "private addresses are normal targets");
}

#[test]
fn query_values_and_header_values_are_redacted_in_what_people_see() {
    let json = array(&[
        r#"{"type": "webhook", "order": 1, "config": {"url": "https://hooks.example.com/x?token=hook-token-123&v=2",
            "headers": {"X-Api-Key": "header-secret-456"}}}"#
            .to_owned(),
        r#"{"type": "http_health_check", "order": 2, "config": {"url": "https://app.example.com/h?sig=health-sig-789"}}"#
            .to_owned(),
    ]);
    let p = plan(&json);
    for step in &p.steps {
        let shown = format!("{} {:?}", step.redacted(), step);
        for secret in ["hook-token-123", "header-secret-456", "health-sig-789"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
    assert_eq!(p.steps[0].redacted()["config"]["url"], "https://hooks.example.com/x?token=redacted&v=redacted");
    assert_eq!(p.steps[0].redacted()["config"]["headers"]["X-Api-Key"], REDACTED);
    // The stored form keeps them: it is what runs.
    assert!(serde_json::to_string(&p.steps[0]).expect("json").contains("hook-token-123"));
}
