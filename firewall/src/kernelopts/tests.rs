use super::*;
use proptest::prelude::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn err(cmdline: &str) -> String {
    parse(cmdline).expect_err(cmdline).to_string()
}

#[test]
fn empty_command_line_sets_nothing() {
    for c in ["", "   ", "\n", "\t \0 ignored after NUL"] {
        let o = parse(c).unwrap();
        assert_eq!(o, KernelOpts::default(), "{c:?}");
        assert!(o.net.is_empty());
        assert_eq!(o.logs.global(), LevelFilter::Info);
    }
}

#[test]
fn mirage_readme_example() {
    let o = parse("--ipv4=10.137.0.5 --ipv4-gw=10.137.0.1").unwrap();
    assert_eq!(o.net.ip, Some(ip("10.137.0.5")));
    assert_eq!(o.net.gateway, Some(ip("10.137.0.1")));
    assert_eq!(o.net.dns, None);
    assert!(o.warnings.is_empty());
}

#[test]
fn every_option_in_both_value_forms() {
    let a = parse(
        "--ipv4=10.0.0.2/24 --ipv4-gw=10.0.0.1 --ipv4-dns=9.9.9.9 --ipv4-dns2=1.1.1.1 --nat-table-size=5000 --logs=debug",
    )
    .unwrap();
    let b = parse(
        "--ipv4 10.0.0.2/24 --ipv4-gw 10.0.0.1 --ipv4-dns 9.9.9.9 --ipv4-dns2 1.1.1.1 --nat-table-size 5000 -l debug",
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(
        a.net,
        NetOverride {
            ip: Some(ip("10.0.0.2")),
            prefix_len: Some(24),
            gateway: Some(ip("10.0.0.1")),
            dns: Some(ip("9.9.9.9")),
            dns2: Some(ip("1.1.1.1")),
        }
    );
    assert_eq!(a.nat_table_size, Some(5000));
    assert_eq!(a.logs.global(), LevelFilter::Debug);
}

#[test]
fn address_with_or_without_prefix() {
    assert_eq!(parse("--ipv4=10.0.0.2").unwrap().net.prefix_len, None);
    assert_eq!(
        parse("--ipv4=10.0.0.2/32").unwrap().net.prefix_len,
        Some(32)
    );
    assert_eq!(parse("--ipv4=10.0.0.2/0").unwrap().net.prefix_len, Some(0));
    assert_eq!(
        err("--ipv4=10.0.0.2/33"),
        "kernel option --ipv4=10.0.0.2/33: not a prefix length (0 to 32)"
    );
    assert_eq!(
        err("--ipv4=10.0.0.2/"),
        "kernel option --ipv4=10.0.0.2/: not a prefix length (0 to 32)"
    );
    assert_eq!(
        err("--ipv4=10.0.0/8"),
        "kernel option --ipv4=10.0.0/8: not an IPv4 address"
    );
}

#[test]
fn zero_address_means_unset_as_in_mirage() {
    let o = parse("--ipv4=0.0.0.0/24 --ipv4-gw=0.0.0.0").unwrap();
    assert!(o.net.is_empty());
    assert_eq!(o.net.prefix_len, None);
}

#[test]
fn bad_addresses_name_the_option_and_value() {
    assert_eq!(
        err("--ipv4-gw=foo"),
        "kernel option --ipv4-gw=foo: not an IPv4 address"
    );
    for (c, want) in [
        ("--ipv4=1.2.3.256", "--ipv4=1.2.3.256"),
        ("--ipv4-dns=::1", "--ipv4-dns=::1"),
        ("--ipv4-dns2=", "--ipv4-dns2="),
        ("--ipv4-gw 01.2.3.4", "--ipv4-gw=01.2.3.4"),
        ("ipv4-gw=1.2.3", "--ipv4-gw=1.2.3"),
    ] {
        assert_eq!(
            err(c),
            format!("kernel option {want}: not an IPv4 address"),
            "{c}"
        );
    }
}

#[test]
fn messages_stay_one_line() {
    // A quoted value may hold a newline; the message escapes it.
    assert_eq!(
        err("--ipv4-gw=\"a\nb\""),
        "kernel option --ipv4-gw=a\\nb: not an IPv4 address"
    );
    assert_eq!(
        err("\"--he\tlp\""),
        "kernel option --he\\tlp: unknown option (the firewall takes --ipv4=A.B.C.D[/N], --ipv4-gw=A.B.C.D, --ipv4-dns=A.B.C.D, --ipv4-dns2=A.B.C.D, --nat-table-size=N, -l/--logs=LEVEL)"
    );
}

#[test]
fn nat_table_size_range() {
    assert_eq!(parse("--nat-table-size=1").unwrap().nat_table_size, Some(1));
    assert_eq!(
        parse("--nat-table-size=1000000").unwrap().nat_table_size,
        Some(MAX_NAT_TABLE_SIZE)
    );
    for v in ["0", "1000001", "99999999999"] {
        assert_eq!(
            err(&format!("--nat-table-size={v}")),
            format!("kernel option --nat-table-size={v}: out of range (1 to 1000000)")
        );
    }
    for v in ["", "+5", "5k", "0x10", "5;"] {
        assert_eq!(
            err(&format!("--nat-table-size={v}")),
            format!("kernel option --nat-table-size={v}: not a number"),
            "{v:?}"
        );
    }
    // A negative value looks like an option, so the value is missing.
    assert_eq!(
        err("--nat-table-size -5"),
        "kernel option --nat-table-size: needs a value"
    );
}

#[test]
fn unknown_dashed_options_are_errors() {
    for o in [
        "--help",
        "--version",
        "-h",
        "--ipv6=::1",
        "--",
        "---ipv4=1.2.3.4",
    ] {
        if o == "--" {
            continue; // end of options, tested below
        }
        match parse(o) {
            Err(KernelOptsError::Unknown(w)) => assert_eq!(w, o),
            r => panic!("{o}: {r:?}"),
        }
    }
    let msg = err("--help");
    assert!(
        msg.starts_with("kernel option --help: unknown option"),
        "{msg}"
    );
    assert!(msg.contains("--ipv4-gw") && msg.contains("--nat-table-size"));
    assert!(!msg.contains('\n'));
}

#[test]
fn prefixes_as_cmdliner() {
    let o = parse("--nat=100 --ipv4-g=1.2.3.4 --lo=debug").unwrap();
    assert_eq!(o.nat_table_size, Some(100));
    assert_eq!(o.net.gateway, Some(ip("1.2.3.4")));
    assert_eq!(o.logs.global(), LevelFilter::Debug);
    // An exact name wins over being a prefix of longer ones.
    assert_eq!(parse("--ipv4=1.2.3.4").unwrap().net.ip, Some(ip("1.2.3.4")));
    assert_eq!(
        parse("--ipv4-dns=1.2.3.4").unwrap().net.dns,
        Some(ip("1.2.3.4"))
    );
    assert_eq!(
        err("--ipv4-d=1.2.3.4"),
        "kernel option --ipv4-d=1.2.3.4: ambiguous, could be --ipv4-dns or --ipv4-dns2"
    );
    assert!(matches!(
        parse("--=1"),
        Err(KernelOptsError::Unknown(w)) if w == "--=1"
    ));
}

#[test]
fn missing_and_repeated() {
    assert_eq!(err("--ipv4"), "kernel option --ipv4: needs a value");
    assert_eq!(
        err("--ipv4 --ipv4-gw=1.2.3.4"),
        "kernel option --ipv4: needs a value"
    );
    assert_eq!(err("-l"), "kernel option -l: needs a value");
    assert_eq!(
        err("--ipv4=1.2.3.4 --ipv4=1.2.3.5"),
        "kernel option --ipv4: given more than once"
    );
    // The legacy form counts as the same option.
    assert_eq!(
        err("--nat-table-size=5 nat-table-size=6"),
        "kernel option --nat-table-size: given more than once"
    );
    // Logs accumulate.
    let o = parse("-l debug --logs=netback:warning -lerror").unwrap();
    assert_eq!(o.logs.global(), LevelFilter::Error);
    assert_eq!(o.logs.threshold("netback::rx"), LevelFilter::Warn);
}

#[test]
fn log_specs_mirage_style() {
    let o = parse("--logs=*:info,netback:debug,engine:warning").unwrap();
    let l = &o.logs;
    assert_eq!(l.global(), LevelFilter::Info);
    assert_eq!(l.threshold("netback"), LevelFilter::Debug);
    assert_eq!(l.threshold("netback::handshake"), LevelFilter::Debug);
    assert_eq!(l.threshold("netbackx"), LevelFilter::Info);
    assert_eq!(l.threshold("firewall::engine::dns"), LevelFilter::Warn);
    assert_eq!(l.threshold("firewall::platform"), LevelFilter::Info);
    assert_eq!(l.max_level(), LevelFilter::Debug);
    assert!(l.enabled("netback", Level::Debug));
    assert!(!l.enabled("firewall::engine", Level::Info));
    assert!(l.enabled("firewall::engine", Level::Warn));

    // Longest prefix wins whatever the order.
    let o = parse("--logs=engine:debug,firewall:error").unwrap();
    assert_eq!(o.logs.threshold("firewall::engine::x"), LevelFilter::Debug);
    assert_eq!(o.logs.threshold("firewall::platform"), LevelFilter::Error);

    for (v, want) in [
        ("quiet", LevelFilter::Off),
        ("app", LevelFilter::Error),
        ("ERROR", LevelFilter::Error),
        ("Warning", LevelFilter::Warn),
        ("warn", LevelFilter::Warn),
        ("trace", LevelFilter::Trace),
    ] {
        assert_eq!(parse(&format!("-l{v}")).unwrap().logs.global(), want, "{v}");
    }
    assert_eq!(parse("-l=debug").unwrap().logs.global(), LevelFilter::Debug);
}

#[test]
fn bad_log_specs() {
    assert_eq!(
        err("--logs=loud"),
        "kernel option --logs=loud: not a log level (quiet, app, error, warning, info, debug)"
    );
    assert_eq!(
        err("-l netback:"),
        "kernel option -l=netback:: not a log level (quiet, app, error, warning, info, debug)"
    );
    assert_eq!(
        err("--logs=:info"),
        "kernel option --logs=:info: empty log source"
    );
    assert_eq!(err("--logs="), "kernel option --logs=: no log level");
    assert!(parse("--logs=info,,debug").is_err());
}

#[test]
fn unknown_log_sources_warn() {
    let o = parse("--logs=*:info,dispatcher:debug,NETBACK:debug").unwrap();
    assert_eq!(
        o.warnings,
        vec![Warning::UnknownLogSource("dispatcher".into())]
    );
    assert_eq!(o.logs.threshold("netback"), LevelFilter::Debug);
    let line = o.warnings[0].to_string();
    assert!(line.starts_with("kernel option --logs: no log source \"dispatcher\""));
    assert!(line.contains("netback"));
}

#[test]
fn legacy_key_value_words() {
    let o = parse("ipv4=10.0.0.2 ipv4-gw=10.0.0.1 nat-table-size=7 l=debug").unwrap();
    assert_eq!(o.net.ip, Some(ip("10.0.0.2")));
    assert_eq!(o.net.gateway, Some(ip("10.0.0.1")));
    assert_eq!(o.nat_table_size, Some(7));
    assert_eq!(o.logs.global(), LevelFilter::Debug);
    assert!(o.warnings.is_empty());
    // No prefixes in this form: the word is not ours.
    let o = parse("nat=7").unwrap();
    assert_eq!(o.nat_table_size, None);
    assert_eq!(o.warnings, vec![Warning::ForeignWord("nat=7".into())]);
}

#[test]
fn dom0s_linux_options_are_ignored_with_warnings() {
    let common =
        "root=/dev/mapper/dmroot ro nomodeset console=hvc0 rd_NO_PLYMOUTH rd.plymouth.enable=0 plymouth.enable=0 ";
    let o = parse(&format!("{common}--ipv4=10.0.0.2")).unwrap();
    assert_eq!(o.net.ip, Some(ip("10.0.0.2")));
    let words: Vec<String> = common.split_whitespace().map(String::from).collect();
    assert_eq!(
        o.warnings,
        words
            .iter()
            .map(|w| Warning::ForeignWord(w.clone()))
            .collect::<Vec<_>>()
    );
    assert!(o.warnings[0].to_string().contains("no-default-kernelopts"));
}

#[test]
fn mirage_runtime_options_are_ignored_with_warnings() {
    let o = parse("--delay=5 --backtrace=true --minor-heap-size 256 --ipv4=1.2.3.4").unwrap();
    assert_eq!(
        o.warnings,
        vec![
            Warning::MirageOnly("delay".into()),
            Warning::MirageOnly("backtrace".into()),
            Warning::MirageOnly("minor-heap-size".into()),
        ]
    );
    assert_eq!(o.net.ip, Some(ip("1.2.3.4")));
    assert_eq!(
        o.warnings[0].to_string(),
        "kernel option --delay: a mirage runtime option, ignored"
    );
}

#[test]
fn end_of_options() {
    let o = parse("--ipv4=1.2.3.4 -- --ipv4-gw=1.2.3.5 x").unwrap();
    assert_eq!(o.net.gateway, None);
    assert_eq!(
        o.warnings,
        vec![
            Warning::ForeignWord("--ipv4-gw=1.2.3.5".into()),
            Warning::ForeignWord("x".into())
        ]
    );
}

#[test]
fn quoting_as_mirage_bootvar() {
    assert_eq!(
        split_words(r#"a "b c" d\ e "f\"g" h\\ "" x"y"z"#).unwrap(),
        vec!["a", "b c", "d e", "f\"g", "h\\", "", "xyz"]
    );
    assert_eq!(
        parse(r#"--logs="*:info,netback:debug""#)
            .unwrap()
            .logs
            .threshold("netback"),
        LevelFilter::Debug
    );
    assert_eq!(parse("\"--ipv4"), Err(KernelOptsError::Quoting));
    assert_eq!(parse("--ipv4\\"), Err(KernelOptsError::Quoting));
    assert_eq!(
        err("\""),
        "kernel options: unterminated quote or trailing backslash"
    );
}

#[test]
fn command_line_overrides_qubesdb_field_by_field() {
    let qdb = NetConfig {
        ip: Some(ip("10.138.0.5")),
        gateway: Some(ip("10.138.0.1")),
        primary_dns: Some(ip("10.139.1.1")),
        secondary_dns: None,
        ..NetConfig::default()
    };
    // Nothing given: QubesDB as it is.
    let mut n = qdb.clone();
    parse("").unwrap().apply_to(&mut n);
    assert_eq!(n, qdb);
    // Only the gateway.
    let mut n = qdb.clone();
    parse("--ipv4-gw=10.138.0.9").unwrap().apply_to(&mut n);
    assert_eq!(n.gateway, Some(ip("10.138.0.9")));
    assert_eq!(n.ip, qdb.ip);
    assert_eq!(n.secondary_dns, None);
    // Both address and gateway: DNS from QubesDB where it has one, else
    // mirage's default.
    let mut n = qdb.clone();
    parse("--ipv4=10.0.0.2 --ipv4-gw=10.0.0.1")
        .unwrap()
        .apply_to(&mut n);
    assert_eq!(n.uplink().unwrap().ip, ip("10.0.0.2"));
    assert_eq!(n.primary_dns, Some(ip("10.139.1.1")));
    assert_eq!(n.secondary_dns, Some(DEFAULT_DNS[1]));
    // No QubesDB at all (no netvm): the command line alone brings the
    // uplink up.
    let mut n = NetConfig::default();
    parse("--ipv4=10.0.0.2 --ipv4-gw=10.0.0.1 --ipv4-dns2=8.8.8.8")
        .unwrap()
        .apply_to(&mut n);
    let u = n.uplink().unwrap();
    assert_eq!((u.ip, u.gateway), (ip("10.0.0.2"), ip("10.0.0.1")));
    assert_eq!(u.dns, [Some(DEFAULT_DNS[0]), Some(ip("8.8.8.8"))]);
}

// ---- properties -----------------------------------------------------------

/// Pieces command lines are made of, so that random ones are often close
/// to valid.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("--ipv4".to_string()),
        Just("--ipv4-gw".to_string()),
        Just("--ipv4-dns".to_string()),
        Just("--ipv4-dns2".to_string()),
        Just("--nat-table-size".to_string()),
        Just("--logs".to_string()),
        Just("-l".to_string()),
        Just("--".to_string()),
        Just("-".to_string()),
        Just("=".to_string()),
        Just(" ".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("/".to_string()),
        Just("*".to_string()),
        Just("debug".to_string()),
        Just("netback".to_string()),
        Just("10.0.0.1".to_string()),
        Just("0.0.0.0".to_string()),
        "[0-9]{1,12}".prop_map(|s| s),
        "[a-z.=-]{1,8}".prop_map(|s| s),
        any::<char>().prop_map(|c| c.to_string()),
    ]
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(s in ".{0,200}") {
        check_outcome(&s);
    }

    #[test]
    fn never_panics_on_option_soup(pieces in prop::collection::vec(piece(), 0..24)) {
        check_outcome(&pieces.concat());
    }

    /// Valid options, written in any of the accepted forms, parse to what
    /// they say.
    #[test]
    fn valid_options_in_any_form_parse_back(
        ip in proptest::option::of(any::<[u8; 4]>()),
        prefix in proptest::option::of(0u8..=32),
        gw in proptest::option::of(any::<[u8; 4]>()),
        nat in proptest::option::of(1usize..=MAX_NAT_TABLE_SIZE),
        level in 0usize..6,
        forms in prop::collection::vec(0u8..4, 5),
        noise in prop::collection::vec("[a-z]{1,6}(=[a-z0-9/]{0,6})?", 0..4),
    ) {
        let levels = ["quiet", "error", "warning", "info", "debug", "trace"];
        let mut words: Vec<String> = noise.iter().map(|w| format!("x{w}")).collect();
        let mut add = |name: &str, value: String, form: u8| {
            words.push(match form {
                0 => format!("--{name}={value}"),
                1 => format!("--{name} {value}"),
                2 => format!("{name}={value}"),
                _ => format!("--{}={value}", &name[..name.len().min(9)]),
            });
        };
        let ip = ip.map(Ipv4Addr::from);
        let gw = gw.map(Ipv4Addr::from);
        if let Some(a) = ip {
            let v = match prefix { Some(p) => format!("{a}/{p}"), None => a.to_string() };
            add("ipv4", v, forms[0] % 3);
        }
        if let Some(g) = gw {
            add("ipv4-gw", g.to_string(), forms[1]);
        }
        if let Some(n) = nat {
            add("nat-table-size", n.to_string(), forms[2]);
        }
        add("logs", levels[level].to_string(), forms[3] % 3);
        let line = words.join(" ");
        let o = parse(&line).map_err(|e| TestCaseError::fail(format!("{line}: {e}")))?;
        let unset = |a: Option<Ipv4Addr>| a.filter(|a| !a.is_unspecified());
        prop_assert_eq!(o.net.ip, unset(ip));
        prop_assert_eq!(o.net.prefix_len, prefix.filter(|_| unset(ip).is_some()));
        prop_assert_eq!(o.net.gateway, unset(gw));
        prop_assert_eq!(o.nat_table_size, nat);
        prop_assert_eq!(o.logs.global(), parse_level(levels[level]).unwrap());
        prop_assert_eq!(o.warnings.len(), noise.len());
    }
}

/// Whatever the input: no panic, and an error or warning is one line
/// starting with "kernel option".
fn check_outcome(s: &str) {
    match parse(s) {
        Ok(o) => {
            for w in &o.warnings {
                let line = w.to_string();
                assert!(line.starts_with("kernel option") && !line.contains('\n'));
            }
            if let Some(n) = o.nat_table_size {
                assert!((1..=MAX_NAT_TABLE_SIZE).contains(&n));
            }
            let _ = o.logs.max_level();
        }
        Err(e) => {
            let line = e.to_string();
            assert!(line.starts_with("kernel option"), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }
}
