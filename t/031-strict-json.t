# Every JSON body is checked against the RFC 8259 grammar before it is
# used or stored: one block per grammar rule, each case sent as a property
# PUT, inside a POST /properties and inside a factory POST; then odd but
# valid values and a few hundred random writes must leave GET /properties
# valid JSON.
#
# The rule blocks send their cases from --- init (one test per rule and
# endpoint, failing cases listed), byte for byte and with no Content-Type
# unless the case has one; the block's own request then checks that
# GET /properties is still JSON.
#
# Blocks without log sections get ActingWeb::Test's default
# --- no_error_log: [error] [alert] [crit] [emerg].

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use Encode ();
use IO::Socket::INET ();
use JSON::PP ();

my $Deep = 64;    # NGX_HTTP_ACTINGWEB_JSON_DEPTH

# rule => [[JSON value, error message or undef if valid], ...]; each value
# is also sent as {"v": VALUE}, so every message holds in both places
our %Cases = (
    numbers => [
        ['0'], ['-0'], ['7'], ['-12'], ['3.25'], ['-0.5'], ['1e5'],
        ['1E+5'], ['2.5e-3'], ['10.0E00'], ['1e400'],
        ['123456789012345678901234567890'],
        ['01', 'malformed JSON: bad number'],
        ['-01', 'malformed JSON: bad number'],
        ['00', 'malformed JSON: bad number'],
        ['1.', 'malformed JSON: bad number'],
        ['2.e3', 'malformed JSON: bad number'],
        ['-.5', 'malformed JSON: bad number'],
        ['-', 'malformed JSON: bad number'],
        ['1e', 'malformed JSON: bad number'],
        ['1e+', 'malformed JSON: bad number'],
        ['1.5.2', 'malformed JSON: bad number'],
        ['1e5e5', 'malformed JSON: bad number'],
        ['1-2', 'malformed JSON: bad number'],
        ['-Infinity', 'malformed JSON: bad number'],
        ['.5', 'malformed JSON'],
        ['+1', 'malformed JSON'],
        ['NaN', 'malformed JSON'],
        ['Infinity', 'malformed JSON'],
    ],
    literals => [
        ['true'], ['false'], ['null'],
        ['True', 'malformed JSON'],
        ['FALSE', 'malformed JSON'],
        ['nul', 'malformed JSON'],
        ['tru', 'malformed JSON'],
        ['undefined', 'malformed JSON'],
        ["'a'", 'malformed JSON'],
    ],
    strings => [
        ['""'], ['"a b"'], ["\"\xc3\xa9 \xe4\xb8\x96 \xf0\x9f\x8c\x8d\""],
        ["\"del \x7f\""], ["\"\xe2\x80\xa8 line separator\""],
        ["\"tab\x09\"", 'malformed JSON: control character in a string'],
        ["\"new\nline\"", 'malformed JSON: control character in a string'],
        ["\"cr\r\"", 'malformed JSON: control character in a string'],
        ["\"\x01\"", 'malformed JSON: control character in a string'],
        ["\"\x1f\"", 'malformed JSON: control character in a string'],
        ["\"nul\x00\"", 'malformed JSON: control character in a string'],
        ['"open', 'malformed JSON: unterminated string'],
        ["\"\xc0\xaf\"", 'body is not valid UTF-8'],
        ["\"\xff\"", 'body is not valid UTF-8'],
        ["\"\xe4\xb8\"", 'body is not valid UTF-8'],
        ["\"\xf4\x90\x80\x80\"", 'body is not valid UTF-8'],
        ["\"\xed\xa0\x80\"", 'body is not valid UTF-8'],
    ],
    escapes => [
        ['"\\" \\\\ \\/ \\b \\f \\n \\r \\t"'], ['"\\u00e9\\u4E16"'],
        ['"\\u001f \\u007F"'], ['"\\u0041"'],
        ['"\\a"', 'malformed JSON: bad escape in a string'],
        ['"\\x41"', 'malformed JSON: bad escape in a string'],
        ["\"\\'\"", 'malformed JSON: bad escape in a string'],
        ['"\\U00e9"', 'malformed JSON: bad escape in a string'],
        ['"\\0"', 'malformed JSON: bad escape in a string'],
        ['"\\u12"', 'malformed JSON: \\u needs four hex digits'],
        ['"\\u12G4"', 'malformed JSON: \\u needs four hex digits'],
        ['"\\u 123"', 'malformed JSON: \\u needs four hex digits'],
        ['"\\u0000"', '\\u0000 is not supported in JSON strings'],
    ],
    surrogates => [
        ['"\\ud83d\\ude00"'], ['"\\uD800\\uDC00"'], ['"\\udbff\\udfff"'],
        ['"\\ud800"', 'malformed JSON: unpaired surrogate in a \\u escape'],
        ['"\\udc00"', 'malformed JSON: unpaired surrogate in a \\u escape'],
        ['"\\ude00\\ud83d"',
         'malformed JSON: unpaired surrogate in a \\u escape'],
        ['"\\ud83d\\u0041"',
         'malformed JSON: unpaired surrogate in a \\u escape'],
        ['"\\ud83d\\ud83d"',
         'malformed JSON: unpaired surrogate in a \\u escape'],
        ['"\\ud83dx"', 'malformed JSON: unpaired surrogate in a \\u escape'],
        ['"\\ud83d\\n"', 'malformed JSON: unpaired surrogate in a \\u escape'],
    ],
    whitespace => [
        ["[ 1 ,\t2\r\n]"], [" \t\r\n{ \"a\" :\n1 } \t\r\n"],
        ["[\x0c1]", 'malformed JSON'],
        ["[1,\x0b2]", 'malformed JSON'],
        ["[\x001]", 'malformed JSON'],
        ["[\xc2\xa01]", 'malformed JSON'],
        ["[1\x0c]", 'malformed JSON'],
        ["\x0c1", 'malformed JSON'],
    ],
    structure => [
        ['{}'], ['[]'], ['{"":0}'], ['[[],{}]'],
        ['{"a":{"b":[{"c":null}]},"d":[1,"x",true]}'],
        ['{"a":1,"a":2}'],
        ['[1,]', 'malformed JSON'],
        ['{"a":1,}', 'malformed JSON'],
        ['[,1]', 'malformed JSON'],
        ['{,}', 'malformed JSON'],
        ['[1 2]', 'malformed JSON'],
        ['{"a" 1}', 'malformed JSON'],
        ['{"a":1 "b":2}', 'malformed JSON'],
        ['{a:1}', 'malformed JSON'],
        ['{1:2}', 'malformed JSON'],
        ['{"a":}', 'malformed JSON'],
        ['{"a"}', 'malformed JSON'],
        ['[', 'malformed JSON'],
        ['{"a":[1}', 'malformed JSON'],
        ['[1}', 'malformed JSON'],
        ['{"a":1]', 'malformed JSON'],
        ["[1,\xc3\xa9]", 'malformed JSON'],
    ],
);

# whole bodies, sent as they are to all three: objects nested up to the
# limit, a BOM, data after the value, blank bodies
our %Whole = (
    nesting => [
        [('{"v":' x ($Deep - 1)) . '[]' . ('}' x ($Deep - 1))],
        ['{"v":' . ('[' x ($Deep - 1)) . (']' x ($Deep - 1)) . '}'],
        [('{"v":' x $Deep) . '[]' . ('}' x $Deep), 'JSON nested too deeply'],
        ['{"v":' . ('[' x $Deep) . (']' x $Deep) . '}',
         'JSON nested too deeply'],
        [('[' x 100000), 'JSON nested too deeply'],
    ],
    whole => [
        ["\xef\xbb\xbf{\"v\":1}", 'malformed JSON: byte order mark'],
        ["\xef\xbb\xbf {\"v\":1}", 'malformed JSON: byte order mark'],
        ["{\"v\":1}\xef\xbb\xbf", 'malformed JSON: data after the value'],
        ['{"v":1} x', 'malformed JSON: data after the value'],
        ['{"v":1}{"w":2}', 'malformed JSON: data after the value'],
        ['{"v":1}}', 'malformed JSON: data after the value'],
        ["{\"v\":1}\x0c", 'malformed JSON: data after the value'],
        ["{\"v\":1}\x00", 'malformed JSON: data after the value'],
        ["{\"v\":1} \t\r\n"],
        [' ', 'malformed JSON'],
        ["\r\n\t", 'malformed JSON'],
    ],
);

# [method, path, body, Content-Type, status, error message] for one rule
# on all three endpoints (the PUT goes to property <rule><case number>)
sub rule {
    my ($rule, $cases, $wrap, $type) = @_;
    my @out;
    my $i = 0;
    for my $c (@$cases) {
        my ($v, $err) = @$c;
        my ($prop, $fact) = $wrap
            ? (qq({"v":$v}), qq({"creator":"f","passphrase":"pw","x":$v}))
            : ($v, $v);
        $i++;
        push @out, map { [ @$_[0 .. 3], defined $err ? 400 : $_->[4],
                           $err ] }
            [ 'PUT', "properties/$rule$i", $v, $type, 204 ],
            [ 'POST', 'properties', $prop, undef, 201 ],
            [ 'POST', '', $fact, undef, 201 ];
    }
    return \@out;
}

our %R = ((map { $_ => rule($_, $Cases{$_}, 1, 'application/json') }
               keys %Cases),
          (map { $_ => rule($_, $Whole{$_}, 0, 'application/json') }
               keys %Whole));

# the invalid objects and arrays again without any Content-Type: JSON, 400
$R{untyped} = rule('untyped',
                   [ grep { defined $_->[1] && $_->[0] =~ /^\s*[\[{]/ }
                     map { @$_ } values(%Cases), values(%Whole) ], 0, undef);

# one request, bytes as given (HTTP::Tiny would add a Content-Type);
# returns (status, body)
sub send_raw {
    my ($port, $method, $path, $type, $body) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 30)
        or die "connect: $!\n";
    print $s "$method $path HTTP/1.1\r\nHost: localhost\r\n"
           . "Connection: close\r\nAuthorization: "
           . ActingWeb::Test::basic_auth('c', 'pw') . "\r\n"
           . (defined $type ? "Content-Type: $type\r\n" : '')
           . 'Content-Length: ' . length($body) . "\r\n\r\n$body";
    local $/;
    my $res = <$s> // '';
    my ($status) = $res =~ m{\AHTTP/1\.1 (\d+)};
    return ($status // 0, $res =~ /\r\n\r\n(.*)\z/s ? $1 : '');
}

# sends a rule's requests; one test per endpoint, failures listed
sub check_rule {
    my ($rule) = @_;
    my $port = ActingWeb::Test::wait_for_server();
    my $id = ActingWeb::Test::captured('id');
    my %bad;
    for my $c (@{ $R{$rule} }) {
        my ($method, $path, $body, $type, $want, $err) = @$c;
        (my $what = "$method /$path") =~ s/\d+$//;
        my ($status, $got) = send_raw($port, $method,
                                      $path eq '' ? '/aw/'
                                                  : "/aw/$id/$path",
                                      $type, $body);
        my $msg = eval { JSON::PP->new->decode($got)->{error}{message} };
        push @{ $bad{$what} }, "$status "
            . ($msg // substr($got, 0, 80)) . ' for ' . unpack('H*',
                  length $body > 80 ? substr($body, 0, 80) : $body)
            if $status != $want
               || (defined $err && ($msg // '') ne $err);
        $bad{$what} //= [];
    }
    for my $what (sort keys %bad) {
        Test::More::ok(!@{ $bad{$what} }, "$rule: $what")
            or Test::More::diag(join "\n", @{ $bad{$what} });
    }
}

# odd but valid values, PUT as they are; GET /properties must embed them
our %Odd = (
    zero    => '-0',
    exp     => '1E+2',
    big     => '123456789012345678901234567890',
    huge    => '1e400',
    esc     => '"\\/\\b\\f\\n\\r\\t\\"\\\\"',
    pair    => '"\\ud83d\\ude00"',
    ls      => "\"\xe2\x80\xa8\"",
    del     => "\"\x7f\"",
    spaced  => " \t\r\n[ 1 ,\t{ \"a\" : [ ] } ]\r\n",
    deep    => ('[' x $Deep) . (']' x $Deep),
    key     => '{"\\u0041\\n":"\\u00e9"}',
    text01  => '01',
    textdot => '1.',
    textneg => '-.5',
    texttab => "\"a\tb\"",
);

# a strictly valid JSON document in UTF-8, or undef
sub strict_json {
    my ($bytes) = @_;
    my $copy = $bytes;
    return undef unless eval {
        Encode::decode('UTF-8', $copy, Encode::FB_CROAK); 1 };
    return eval { JSON::PP->new->utf8->allow_nonref->decode($bytes) };
}

# random edits of valid documents, PUT with no, a JSON or a text type
sub random_writes {
    my ($id, $n) = @_;
    my $port = ActingWeb::Test::wait_for_server();
    my @seeds = ('{"a":[1,2.5e-3,-0,true,false,null,"x\\u00e9\\ud83d\\ude00"]}',
                 " [ 0 , \"\xc3\xa9\" , [] , {\"k\" : \"v\"} ] ", '"s"', '12',
                 '{"\\"":"\\\\/\\b\\f\\n\\r\\t"}', '[[[[]]]]');
    my @bits = ('{', '}', '[', ']', ':', ',', '"', '\\', '\\u', '\\ud800',
                '\\udc00', '\\u0000', '0', '01', '1.', '.5', '-', 'e',
                ' ', "\t", "\x0c", "\x00", "\x01", "\xef\xbb\xbf",
                "\xed\xa0\x80", "\xc3", "\xe2\x80\xa8", 'true', 'nul');
    my @types = (undef, 'application/json', 'text/plain');
    my %sent;
    srand(8259);
    for my $i (1 .. $n) {
        my $b = $seeds[rand @seeds];
        for (1 .. 1 + int rand 3) {
            my $pos = int rand(length($b) + 1);
            my $r = rand;
            if ($r < 0.6) {
                substr($b, $pos, 0) = $bits[rand @bits];
            } elsif (length $b) {
                substr($b, $pos > 0 ? $pos - 1 : 0, 1) = '';
            }
        }
        my $type = $types[rand @types];
        my ($status) = send_raw($port, 'PUT', "/aw/$id/properties/f$i",
                                $type, $b);
        $sent{"f$i"} = [ $b, $type, $status ];
    }
    my ($status, $all) = send_raw($port, 'GET', "/aw/$id/properties",
                                  undef, '');
    Test::More::is($status, 200, 'random writes: GET /properties');
    my $doc = strict_json($all);
    Test::More::ok(ref $doc eq 'HASH', 'random writes: still strict JSON')
        or Test::More::diag(substr($all, 0, 2000));
    my @bad;
    my %n;
    for my $k (sort keys %sent) {
        my ($b, $type, $status) = @{ $sent{$k} };
        $n{$status}++;
        if ($status == 400) {
            push @bad, "$k: 400 but stored" if exists $doc->{$k};
            push @bad, "$k: valid JSON refused: " . unpack('H*', $b)
                if ($type // '') ne 'text/plain' && defined strict_json($b)
                   && $b !~ /\\u0000/;
        } elsif ($status != 204) {
            push @bad, "$k: status $status";
        } elsif (!exists $doc->{$k}) {
            push @bad, "$k: 204 but not stored";
        } elsif (($type // '') ne 'text/plain' && defined strict_json($b)) {
            # valid JSON must be stored as JSON, with the value sent
            my $want = JSON::PP->new->canonical->allow_nonref;
            push @bad, "$k: JSON changed"
                if $want->encode(strict_json($b))
                   ne $want->encode($doc->{$k});
        } elsif (($type // '') eq 'application/json') {
            push @bad, "$k: invalid JSON accepted: " . unpack('H*', $b);
        } elsif ($doc->{$k} ne Encode::decode('UTF-8', $b)) {
            push @bad, "$k: text changed";
        }
    }
    Test::More::ok(!@bad, "random writes: each value as sent "
                   . join(', ', map { "$n{$_} x $_" } sort keys %n))
        or Test::More::diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
    Test::More::ok($n{204} && $n{400}, 'random writes: some valid, some not');
}

block_defaults(
    config       => "    location /aw/ { actingweb; }\n",
    more_headers => "Authorization: {{basic:c:pw}}\n",
);

run_tests();

__DATA__

=== TEST 1: create the actor
--- request
POST /aw/
{"creator": "c", "passphrase": "pw"}
--- error_code: 201
--- capture
id = json:id
--- init
$main::actors = () = ActingWeb::Test::redis_keys('*:actor');



=== TEST 2: numbers: -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?
--- init
main::check_rule('numbers');
--- request
GET /aw/{{id}}/properties
--- response_body_json
{"...": null}



=== TEST 3: literals: true, false, null, lower case and whole
--- init
main::check_rule('literals');
--- request
GET /aw/{{id}}/properties
--- response_body_json
{"...": null}



=== TEST 4: strings: no raw control characters, UTF-8 only, terminated
--- init
main::check_rule('strings');
--- request
GET /aw/{{id}}/properties
--- response_body_json
{"...": null}



=== TEST 5: escapes: the eight single ones and \u with four hex digits
--- init
main::check_rule('escapes');
--- request
GET /aw/{{id}}/properties
--- response_body_json
{"...": null}



=== TEST 6: surrogates: a high one then a low one, nothing else
--- init
main::check_rule('surrogates');
--- request
GET /aw/{{id}}/properties
--- response_body_json
{"...": null}



=== TEST 7: white space: space, tab, CR, LF only (no FF, VT, NUL, NBSP)
--- init
main::check_rule('whitespace');
--- request
GET /aw/{{id}}/properties
--- response_body_json
{"...": null}



=== TEST 8: objects and arrays: members, commas, colons, matching brackets
--- init
main::check_rule('structure');
--- request
GET /aw/{{id}}/properties
--- response_body_json
{"...": null}



=== TEST 9: nesting: 64 open containers at most
--- init
main::check_rule('nesting');
--- request
GET /aw/{{id}}/properties
--- response_body_json
{"...": null}



=== TEST 10: whole bodies: no BOM, nothing after the value, not blank
--- init
main::check_rule('whole');
--- request
GET /aw/{{id}}/properties
--- response_body_json
{"...": null}



=== TEST 11: without a JSON type, a body starting with { or [ is JSON too
--- init
main::check_rule('untyped');
--- request
GET /aw/{{id}}/properties
--- response_body_json
{"...": null}



=== TEST 12: ... also after a BOM or blanks JSON would not allow
--- request eval
["PUT /aw/{{id}}/properties/bom\n\xef\xbb\xbf{\"a\":1}",
 "PUT /aw/{{id}}/properties/ff\n\x0c[1]",
 "PUT /aw/{{id}}/properties/ff\n\x0c[1]",
 "GET /aw/{{id}}/properties/bom",
 "GET /aw/{{id}}/properties/ff"]
--- more_headers eval
["Authorization: {{basic:c:pw}}\nContent-Length: 10",
 "Authorization: {{basic:c:pw}}\nContent-Length: 4",
 "Authorization: {{basic:c:pw}}\nContent-Length: 4\nContent-Type: text/plain",
 "Authorization: {{basic:c:pw}}", "Authorization: {{basic:c:pw}}"]
--- error_code eval
[400, 400, 204, 404, 200]
--- response_body eval
['{"error":{"code":400,"message":"malformed JSON: byte order mark"}}',
 '{"error":{"code":400,"message":"malformed JSON"}}', '',
 '{"error":{"code":404,"message":"property not found"}}', "\x0c[1]"]



=== TEST 13: nothing invalid was stored, valid values were stored as sent
--- init
my $n = () = ActingWeb::Test::redis_keys('*:actor');
my $valid = grep { !defined $_->[1] } map { @$_ } values %main::Cases;
$valid += grep { !defined $_->[1] } map { @$_ } values %main::Whole;
Test::More::is($n - $main::actors, $valid + 1,
               'one actor per valid factory POST');
--- request eval
["GET /aw/{{id}}/properties/whitespace1",
 "GET /aw/{{id}}/properties/whitespace3",
 "GET /aw/{{id}}/properties/numbers12",
 "GET /aw/{{id}}/properties/numbers13"]
--- error_code eval
[200, 404, 200, 404]
--- response_body eval
["[ 1 ,\t2\r\n]",
 '{"error":{"code":404,"message":"property not found"}}',
 '123456789012345678901234567890',
 '{"error":{"code":404,"message":"property not found"}}']



=== TEST 14: clear the properties
--- request
DELETE /aw/{{id}}/properties
--- error_code: 204



=== TEST 15: odd but valid values are stored as sent ...
--- request eval
[map { "PUT /aw/{{id}}/properties/$_\n$main::Odd{$_}" } sort keys %main::Odd]
--- more_headers eval
[map { "Authorization: {{basic:c:pw}}\nContent-Length: "
       . length($main::Odd{$_}) } sort keys %main::Odd]
--- error_code eval
[map { 204 } keys %main::Odd]



=== TEST 16: ... and GET /properties is still JSON holding them
--- request
GET /aw/{{id}}/properties
--- response_body_json eval
JSON::PP->new->encode({
    zero => 0, exp => 100, big => '~^123456789012345678901234567890$',
    huge => '{{ANY}}', esc => "/\b\f\n\r\t\"\\", pair => "\x{1f600}",
    ls => "\xe2\x80\xa8",
    del => "\x7f", spaced => [1, { a => [] }],
    deep => '{{ANY}}', key => { "A\n" => "\x{e9}" },
    text01 => '01', textdot => '1.', textneg => '-.5', texttab => "\"a\tb\""
})



=== TEST 17: property: whatever is written, GET /properties stays JSON
--- init
main::random_writes(ActingWeb::Test::captured('id'), 500);
--- request
GET /aw/{{id}}/properties/nothing
--- error_code: 404
