use super::*;
use serde_json::json;

#[test]
fn builders_serialise_as_the_docs_show() {
    let table: Vec<(Block, &str)> = vec![
        (
            Block::image("Image1", "https://x/p.jpg"),
            r#"{"IMAGE":{"NAME":"Image1","LINK":"https://x/p.jpg"}}"#,
        ),
        (
            Block::file("File1.docx", "https://x/d.docx"),
            r#"{"FILE":{"NAME":"File1.docx","LINK":"https://x/d.docx"}}"#,
        ),
        (Block::message("[B]hi[/B]"), r#"{"MESSAGE":"[B]hi[/B]"}"#),
        (Block::delimiter(), r#"{"DELIMITER":{}}"#),
        (
            Block::delimiter_with(Delimiter::new().size(200).color("#c6c6c6")),
            r##"{"DELIMITER":{"SIZE":200,"COLOR":"#c6c6c6"}}"##,
        ),
        (
            Block::user(
                User::new("John Smith")
                    .avatar("https://x/a.png")
                    .link("https://x"),
            ),
            r#"{"USER":{"NAME":"John Smith","AVATAR":"https://x/a.png","LINK":"https://x"}}"#,
        ),
        (
            Block::user(User::new("Bot").bot_id(3).avatar_type(AvatarType::Bot)),
            r#"{"USER":{"NAME":"Bot","BOT_ID":3,"AVATAR_TYPE":"BOT"}}"#,
        ),
        (
            Block::user(User::new("Chat").chat_id(4)),
            r#"{"USER":{"NAME":"Chat","CHAT_ID":4}}"#,
        ),
        (
            Block::user(User::new("Net").network_id("n5")),
            r#"{"USER":{"NAME":"Net","NETWORK_ID":"n5"}}"#,
        ),
        (
            Block::link(
                Link::new("https://api.bitrix24.com/")
                    .name("Ticket")
                    .desc("Soon")
                    .preview("https://x/logo.png")
                    .preview_size(1000, 638),
            ),
            r#"{"LINK":{"NAME":"Ticket","LINK":"https://api.bitrix24.com/","DESC":"Soon","PREVIEW":"https://x/logo.png","WIDTH":1000,"HEIGHT":638}}"#,
        ),
        (
            Block::link(Link::to_user("Ann", 5)),
            r#"{"LINK":{"NAME":"Ann","USER_ID":5}}"#,
        ),
        (
            Block::link(Link::to_chat("Team", 6).html("<b>x</b>")),
            r#"{"LINK":{"NAME":"Team","HTML":"<b>x</b>","CHAT_ID":6}}"#,
        ),
        (
            Block::rich_link(Link::new("/r").extra_image("/e.png")),
            r#"{"RICH_LINK":{"LINK":"/r","EXTRA_IMAGE":"/e.png"}}"#,
        ),
        (
            Block::grid([
                GridItem::new("Priority", "High")
                    .display(Display::Line)
                    .color_token(ColorToken::Alert)
                    .color("#ff0000")
                    .width(250),
                GridItem::new("A", "B").display(Display::Row),
                GridItem::new("C", "D").display(Display::Table),
                GridItem::new("E", "F")
                    .height(5)
                    .link("/x")
                    .user_id(1)
                    .chat_id(2),
            ]),
            concat!(
                r##"{"GRID":[{"DISPLAY":"LINE","NAME":"Priority","VALUE":"High","WIDTH":250,"COLOR_TOKEN":"alert","COLOR":"#ff0000"},"##,
                r#"{"DISPLAY":"ROW","NAME":"A","VALUE":"B"},{"DISPLAY":"TABLE","NAME":"C","VALUE":"D"},"#,
                r#"{"DISPLAY":"BLOCK","NAME":"E","VALUE":"F","HEIGHT":5,"LINK":"/x","USER_ID":1,"CHAT_ID":2}]}"#
            ),
        ),
        (
            Block::images([Image::new("https://x/m.jpg")
                .name("Mantis")
                .preview("https://x/m-small.jpg")
                .size(1000, 638)]),
            r#"{"IMAGE":[{"NAME":"Mantis","LINK":"https://x/m.jpg","PREVIEW":"https://x/m-small.jpg","WIDTH":1000,"HEIGHT":638}]}"#,
        ),
        (
            Block::files([File::new("https://x/r.pdf").name("r.pdf").size(1500000)]),
            r#"{"FILE":[{"NAME":"r.pdf","LINK":"https://x/r.pdf","SIZE":1500000}]}"#,
        ),
    ];
    for (block, want) in table {
        assert_eq!(block.as_json().to_string(), want);
        // Every builder output is something the portal stores untouched.
        let check = Attach::new([block]).check();
        assert!(check.is_ok(), "{want}: {}", check.report());
    }
}

#[test]
fn builders_are_checked_too() {
    // The portal keeps one target per USER; the check says which one is lost.
    let check = Attach::new([Block::user(User::new("u").user_id(1).link("/x"))]).check();
    assert_eq!(check.verdict(), Verdict::Ignored);
    assert!(
        check
            .report()
            .starts_with("blocks[0].USER.LINK: the portal keeps one target")
    );
    let check = Attach::new([Block::image("x", "ftp://x")]).check();
    assert_eq!(check.verdict(), Verdict::Rejected);
}

#[test]
fn full_form_setters_keep_the_docs_order() {
    let a = Attach::new([Block::message("m")])
        .description("d")
        .color("#29619b")
        .color_token(ColorToken::Primary)
        .id(1);
    assert_eq!(
        a.as_json().to_string(),
        r##"{"ID":1,"COLOR_TOKEN":"primary","COLOR":"#29619b","DESCRIPTION":"d","BLOCKS":[{"MESSAGE":"m"}]}"##
    );
    assert_eq!(
        Attach::new([Block::delimiter()]).transparent().as_json(),
        &json!({"COLOR": "TRANSPARENT", "BLOCKS": [{"DELIMITER": {}}]})
    );
    assert!(
        Attach::new([Block::delimiter()])
            .color("red")
            .check()
            .report()
            .starts_with("COLOR: \"red\" is not a colour the portal accepts")
    );
}

#[test]
fn every_mistake_has_a_path_and_a_fix() {
    let table: Vec<(Value, Verdict, &[&str])> = vec![
        (
            json!([{"MESSAGE": "ok"}, {"IMAGE": {"NAME": "x", "LINK": "ftp://x"}}]),
            Verdict::Dropped,
            &[
                "blocks[1].IMAGE.LINK: \"ftp://x\" is not a link the portal accepts (use http://, https:// or /); the portal drops this image",
            ],
        ),
        (
            json!([{"IMAGE": [{"LINK": "/a.png"}, {"Link": "/b.png"}, {"LNK": "/c.png"}]}]),
            Verdict::Dropped,
            &[
                "blocks[0].IMAGE[1].Link: unknown key; did you mean LINK? (keys are case-sensitive) Without LINK the portal drops this image",
                "blocks[0].IMAGE[2].LNK: unknown key; did you mean LINK? Without LINK the portal drops this image",
            ],
        ),
        (
            json!([{"FILE": {"NAME": "f"}}, {"MESSAGE": "m"}]),
            Verdict::Dropped,
            &[
                "blocks[0].FILE.LINK: is missing (use http://, https:// or /); the portal drops this file",
            ],
        ),
        (
            json!({"MESSAGE": "x"}),
            Verdict::Rejected,
            &[
                "ATTACH: is a single MESSAGE block, but the portal wants a list of blocks: wrap it in [ ] (or use the full form with \"BLOCKS\")",
            ],
        ),
        (
            json!({"blocks": [{"MESSAGE": "x"}]}),
            Verdict::Rejected,
            &[
                "blocks: unknown key; did you mean BLOCKS? (keys are case-sensitive; without BLOCKS the portal reads this object's values as blocks)",
            ],
        ),
        (
            json!({"BLOCKS": []}),
            Verdict::Rejected,
            &[
                "ATTACH: has no blocks, so the portal answers ATTACH_ERROR; add at least one block such as {\"MESSAGE\": \"text\"}",
            ],
        ),
        (
            json!("not json"),
            Verdict::Rejected,
            &[
                "ATTACH: \"not json\" is a string that is not JSON; pass a list of blocks such as [{\"MESSAGE\": \"text\"}]",
            ],
        ),
        (
            json!(true),
            Verdict::Rejected,
            &["ATTACH: must be a list of blocks such as [{\"MESSAGE\": \"text\"}], not a boolean"],
        ),
        (
            json!([1, {"Message": "x"}, {"MESSAGE": "  "}, {"MESSAGE": "ok"}]),
            Verdict::Dropped,
            &[
                "blocks[0]: is a number, but a block is an object such as {\"MESSAGE\": \"text\"}; the portal drops it",
                "blocks[1].Message: unknown key; did you mean MESSAGE? (keys are case-sensitive; the portal drops this block)",
                "blocks[2].MESSAGE: is empty; the portal drops a MESSAGE without text",
            ],
        ),
        (
            json!([{"MESSAGE": null}]),
            Verdict::Rejected,
            &[
                "blocks[0]: has no block key with a value (USER, LINK, RICH_LINK, MESSAGE, GRID, IMAGE, FILE, DELIMITER); the portal drops it",
            ],
        ),
        (
            json!([{"MESSAGE": "m", "IMAGE": {"LINK": "/x"}, "FOO": 1}]),
            Verdict::Ignored,
            &[
                "blocks[0].IMAGE: the portal reads only one block per object (MESSAGE here) and ignores this one; put it in its own block",
                "blocks[0].FOO: unknown key (the portal ignores it; known keys: USER, LINK, RICH_LINK, MESSAGE, GRID, IMAGE, FILE, DELIMITER)",
            ],
        ),
        (
            json!([{"USER": {"NAM": "x"}}, {"USER": [{"NAME": " "}]}, {"MESSAGE": "m"}]),
            Verdict::Dropped,
            &[
                "blocks[0].USER.NAM: unknown key; did you mean NAME? Without NAME the portal drops this user",
                "blocks[1].USER[0].NAME: is missing or empty; the portal drops a USER without a name",
            ],
        ),
        (
            json!([{"USER": {"NAME": "u", "USER_ID": 5, "LINK": "https://x", "AVATAR": "ftp://a", "AVATAR_TYPE": "ROBOT", "BOT_ID": "x"}}]),
            Verdict::Ignored,
            &[
                "blocks[0].USER.BOT_ID: \"x\" is not a positive whole number; the portal ignores it",
                "blocks[0].USER.LINK: the portal keeps one target (USER_ID here: NETWORK_ID, then USER_ID, CHAT_ID, BOT_ID, LINK) and ignores this one",
                "blocks[0].USER.AVATAR: \"ftp://a\" is not a link the portal accepts (use http://, https:// or /); the portal ignores it",
                "blocks[0].USER.AVATAR_TYPE: \"ROBOT\" is not an avatar type (use USER, CHAT or BOT); the portal ignores it",
            ],
        ),
        (
            json!([{"LINK": {"NAME": "n"}}, {"LINK": {"LINK": "mailto:x"}}, {"LINK": {"USER_ID": 5}}, {"LINK": {"LINK": "/x", "WIDTH": 5, "HTML": "<b>", "PREVIEW": "/p"}}]),
            Verdict::Dropped,
            &[
                "blocks[0].LINK.LINK: is missing (use http://, https:// or /); the portal drops this link",
                "blocks[1].LINK.LINK: \"mailto:x\" is not a link the portal accepts (use http://, https:// or /); the portal drops this link",
                "blocks[2].LINK.NAME: is missing; a link to a user or chat needs NAME too (or give a LINK), so the portal drops it",
                "blocks[3].LINK.PREVIEW: the portal ignores it when HTML is given",
                "blocks[3].LINK.WIDTH: the portal ignores it when HTML is given",
            ],
        ),
        (
            json!([{"LINK": {"LINK": "/x", "HEIGHT": 5, "PREVIEW": "javascript:x"}}]),
            Verdict::Ignored,
            &[
                "blocks[0].LINK.PREVIEW: \"javascript:x\" is not a link the portal accepts (use http://, https:// or /); the portal ignores it",
                "blocks[0].LINK.HEIGHT: sizes the PREVIEW image; without a valid PREVIEW the portal ignores it",
            ],
        ),
        (
            json!([{"GRID": {"NAME": "a", "VALUE": "b"}}, {"GRID": []}, {"GRID": [{"NAME": "", "VALUE": ""}, "x", {"NAME": "k", "DISPLAY": "line", "LINK": "x", "WIDTH": "abc", "COLOR": "red", "COLOR_TOKEN": "danger", "NAME ": 1}]}]),
            Verdict::Dropped,
            &[
                "blocks[0].GRID: is an object, but GRID must be a list of items such as [{\"NAME\": \"Status\", \"VALUE\": \"ok\"}]; wrap it in [ ]",
                "blocks[1].GRID: is empty; the portal drops it",
                "blocks[2].GRID[0]: has neither NAME nor VALUE; the portal drops it (only DISPLAY \"LINE\" items may be empty)",
                "blocks[2].GRID[1]: is a string, but must be an object such as {\"NAME\": \"Status\", \"VALUE\": \"ok\"}; the portal drops it",
                "blocks[2].GRID[2].NAME : unknown key; did you mean NAME? (the portal ignores it)",
                "blocks[2].GRID[2].DISPLAY: \"line\" is not a display mode, so the portal shows BLOCK (did you mean LINE? use BLOCK, LINE, ROW or TABLE)",
                "blocks[2].GRID[2].COLOR: \"red\" is not a colour the portal accepts (use #RGB or #RRGGBB); the portal ignores it",
                "blocks[2].GRID[2].COLOR_TOKEN: \"danger\" is not a colour token (use primary, secondary, alert or base)",
                "blocks[2].GRID[2].WIDTH: \"abc\" is not a positive whole number; the portal ignores it",
                "blocks[2].GRID[2].LINK: \"x\" is not a link the portal accepts (use http://, https:// or /); the portal ignores it",
            ],
        ),
        (
            json!([{"IMAGE": "https://x/a.png"}, {"FILE": {"LINK": "/f", "SIZE": -1, "NAME": ["x"]}}, {"DELIMITER": "x"}, {"DELIMITER": {"SIZE": 0, "COLOR": "grey"}}]),
            Verdict::Dropped,
            &[
                "blocks[0].IMAGE: is a string, but IMAGE must be an object such as {\"LINK\": \"https://…\"} or a list of them; the portal drops it",
                "blocks[1].FILE.NAME: is a list, but must be text; the portal ignores it",
                "blocks[1].FILE.SIZE: -1 is not a size in bytes; the portal ignores it",
                "blocks[2].DELIMITER: is a string; the portal ignores it and draws a default delimiter (use {} or {\"SIZE\": 200, \"COLOR\": \"#c6c6c6\"})",
                "blocks[3].DELIMITER.SIZE: 0 is not a positive whole number; the portal ignores it",
                "blocks[3].DELIMITER.COLOR: \"grey\" is not a colour the portal accepts (use #RGB or #RRGGBB); the portal ignores it",
            ],
        ),
        (
            json!({"COLOR": "transparent", "COLOUR": "#fff", "COLOR_TOKEN": "danger", "DESCRIPTION": {}, "BLOCKS": [{"DELIMITER": {}}]}),
            Verdict::Ignored,
            &[
                "COLOUR: unknown key; did you mean COLOR? (the portal ignores it)",
                "COLOR: \"transparent\" is not a colour the portal accepts, so it picks a random one (write TRANSPARENT in capitals)",
                "COLOR_TOKEN: \"danger\" is not a colour token (use primary, secondary, alert or base)",
                "DESCRIPTION: is an object, but must be text; the portal ignores it",
            ],
        ),
        (
            json!({"BLOCKS": {"a": {"MESSAGE": "m"}}}),
            Verdict::Ignored,
            &[
                "BLOCKS: is an object; the portal reads its values as blocks and ignores its keys, so use a list [ … ]",
            ],
        ),
        (
            json!([{"MESSAGE": "a".repeat(59_957)}]),
            Verdict::Oversize,
            &[
                "ATTACH: is 60000 characters as the portal measures it (the limit is 59999, counted after HTML escaping and with / as \\/); shorten the text or send several notifications",
            ],
        ),
    ];
    for (input, verdict, want) in table {
        let check = Attach::check_json(&input);
        let got: Vec<String> = check.issues().iter().map(ToString::to_string).collect();
        assert_eq!(got, want, "{input}");
        assert_eq!(check.verdict(), verdict, "{input}");
        for line in &got {
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }
}

#[test]
fn stored_form_and_measure() {
    let check = check::check_at(
        &json!([{"MESSAGE": " a<br>b & \"c\" / я "}, {"GRID": [{"NAME": "k", "VALUE": "x<br>y", "DISPLAY": "CARD"}]}]),
        1_700_000_000,
    );
    let stored = json!({"ID": 1_700_000_000u64, "BLOCKS": [
        {"MESSAGE": "a[BR]b &amp; &quot;c&quot; / я"},
        {"GRID": [{"DISPLAY": "LINE", "NAME": "k", "VALUE": "x#BR#y"}]},
    ]});
    assert_eq!(check.stored(), Some(&stored));
    assert_eq!(
        check.measured_len(),
        Some(php::json_encode(&stored).chars().count())
    );
    assert!(php::json_encode(&stored).contains(r"/ я".replace('/', r"\/").as_str()));
    assert_eq!(check.verdict(), Verdict::Clean);
}

#[test]
fn from_json_accepts_the_portal_forms_only() {
    assert!(Attach::from_json(json!([{"MESSAGE": "x"}])).is_ok());
    assert!(Attach::from_json(json!({"ID": 1, "BLOCKS": [{"MESSAGE": "x"}]})).is_ok());
    assert!(Attach::from_json(json!([])).unwrap().is_empty());
    assert!(Attach::from_json(json!("")).unwrap().is_empty());
    assert_eq!(
        Attach::from_json(json!("[{\"MESSAGE\":\"x\"}]"))
            .unwrap()
            .as_json(),
        &json!([{"MESSAGE": "x"}])
    );
    for (bad, needle) in [
        (json!({"MESSAGE": "x"}), "wrap it in [ ]"),
        (json!("text"), "is a string that is not JSON"),
        (json!([1]), "blocks[0]: is a number"),
    ] {
        let e = Attach::from_json(bad).unwrap_err().to_string();
        assert!(e.starts_with("ATTACH: ") && e.contains(needle), "{e}");
    }
    // Every mistake, one line each.
    let e = Attach::from_json(
        json!([{"MESSAGE": ""}, {"IMAGE": {"LINK": "ftp://x"}}, {"MESSAGE": "ok"}]),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e.lines().count(), 2, "{e}");
}

#[test]
fn suggestions_are_near_misses_only() {
    assert_eq!(
        check::suggest_for_tests("Link", &["LINK", "NAME"]),
        Some("LINK")
    );
    assert_eq!(
        check::suggest_for_tests("LNK", &["LINK", "NAME"]),
        Some("LINK")
    );
    assert_eq!(
        check::suggest_for_tests("IMG", &["IMAGE", "FILE"]),
        Some("IMAGE")
    );
    assert_eq!(
        check::suggest_for_tests("PICTURE", &["IMAGE", "FILE"]),
        None
    );
    assert_eq!(check::suggest_for_tests("X", &["ID"]), None);
}
