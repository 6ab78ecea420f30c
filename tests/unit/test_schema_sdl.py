"""The schema file speaks Dagger's core API (v0.21.x) for the subset dirk serves.

The names, types and defaults below are the ones the released clients (dagger-io and
@dagger.io/dagger 0.21.x) send; a change here breaks them.
"""

from __future__ import annotations

import pytest
from graphql import (
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
    print_ast,
)

from dirk.schema import SCHEMA_PATH, load_sdl


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return build_schema(load_sdl())


def _signature(schema: GraphQLSchema, type_name: str, field_name: str) -> str:
    field = schema.type_map[type_name].fields[field_name]  # type: ignore[union-attr]
    args = []
    for name, arg in field.args.items():
        text = f"{name}: {arg.type}"
        if arg.ast_node is not None and arg.ast_node.default_value is not None:
            text += f" = {print_ast(arg.ast_node.default_value)}"
        args.append(text)
    return f"{field_name}({', '.join(args)}): {field.type}"


def test_schema_file_ships_with_the_package() -> None:
    assert SCHEMA_PATH.name == "dirk.graphql"
    assert SCHEMA_PATH.is_file()


def test_every_object_type_implements_node(schema: GraphQLSchema) -> None:
    node = schema.type_map["Node"]
    assert isinstance(node, GraphQLInterfaceType)
    for name, type_ in schema.type_map.items():
        if isinstance(type_, GraphQLObjectType) and not name.startswith("__") and name != "Query":
            assert node in type_.interfaces, f"{name} does not implement Node"
            assert str(type_.fields["id"].type) == "ID!"


@pytest.mark.parametrize(
    ("type_name", "field", "signature"),
    [
        ("Query", "container", "container(platform: Platform): Container!"),
        ("Query", "node", "node(id: ID!): Node"),
        ("Query", "loadContainerFromID", "loadContainerFromID(id: ID!): Container!"),
        ("Query", "setSecret", "setSecret(name: String!, plaintext: String!): Secret!"),
        (
            "Query",
            "cacheVolume",
            "cacheVolume(key: String!, source: ID, sharing: CacheSharingMode = SHARED, "
            'owner: String = ""): CacheVolume!',
        ),
        ("Container", "sync", "sync(): ID!"),
        (
            "Container",
            "withExec",
            "withExec(args: [String!]!, useEntrypoint: Boolean = false, stdin: String = "
            '"", redirectStdin: String = "", redirectStdout: String = "", redirectStderr: '
            'String = "", expect: ReturnType = SUCCESS, experimentalPrivilegedNesting: '
            "Boolean = false, insecureRootCapabilities: Boolean = false, expand: Boolean = "
            "false, noInit: Boolean = false): Container!",
        ),
        (
            "Container",
            "withMountedCache",
            "withMountedCache(path: String!, cache: ID!, source: ID, sharing: CacheSharingMode"
            ' = SHARED, owner: String = "", expand: Boolean = false): Container!',
        ),
        (
            "Container",
            "withDirectory",
            "withDirectory(path: String!, source: ID!, exclude: [String!] = [], include: "
            '[String!] = [], gitignore: Boolean = false, owner: String = "", expand: Boolean '
            "= false, permissions: Int): Container!",
        ),
        (
            "Container",
            "withNewFile",
            "withNewFile(path: String!, contents: String!, permissions: Int = 420, "
            'owner: String = "", expand: Boolean = false): Container!',
        ),
        (
            "Container",
            "terminal",
            "terminal(cmd: [String!] = [], experimentalPrivilegedNesting: Boolean = false, "
            "insecureRootCapabilities: Boolean = false): Container!",
        ),
        (
            "Container",
            "withDefaultTerminalCmd",
            "withDefaultTerminalCmd(args: [String!]!, experimentalPrivilegedNesting: Boolean = "
            "false, insecureRootCapabilities: Boolean = false): Container!",
        ),
        (
            "Directory",
            "terminal",
            "terminal(container: ID, cmd: [String!] = [], experimentalPrivilegedNesting: "
            "Boolean = false, insecureRootCapabilities: Boolean = false): Directory!",
        ),
        ("Container", "envVariables", "envVariables: [EnvVariable!]!"),
        ("Directory", "entries", "entries(path: String): [String!]!"),
        (
            "Directory",
            "withNewDirectory",
            "withNewDirectory(path: String!, permissions: Int = 420): Directory!",
        ),
        (
            "Host",
            "directory",
            "directory(path: String!, exclude: [String!] = [], include: [String!] = [], "
            "noCache: Boolean = false, gitignore: Boolean = false): Directory!",
        ),
        ("File", "contents", "contents(offsetLines: Int, limitLines: Int): String!"),
        (
            "Container",
            "asService",
            "asService(args: [String!] = [], useEntrypoint: Boolean = false, "
            "experimentalPrivilegedNesting: Boolean = false, insecureRootCapabilities: Boolean "
            "= false, expand: Boolean = false, noInit: Boolean = false): Service!",
        ),
        (
            "Container",
            "withExposedPort",
            "withExposedPort(port: Int!, protocol: NetworkProtocol = TCP, description: String, "
            "experimentalSkipHealthcheck: Boolean = false): Container!",
        ),
        (
            "Container",
            "withoutExposedPort",
            "withoutExposedPort(port: Int!, protocol: NetworkProtocol = TCP): Container!",
        ),
        (
            "Container",
            "withServiceBinding",
            "withServiceBinding(alias: String!, service: ID!): Container!",
        ),
        ("Service", "endpoint", 'endpoint(port: Int, scheme: String = ""): String!'),
        ("Service", "hostname", "hostname(): String!"),
        ("Service", "ports", "ports(): [Port!]!"),
        ("Service", "start", "start(): ID!"),
        ("Service", "stop", "stop(kill: Boolean = false): ID!"),
        ("Service", "sync", "sync(): ID!"),
        ("Service", "withHostname", "withHostname(hostname: String!): Service!"),
        ("Service", "terminal", "terminal(cmd: [String!] = []): Service!"),
        ("Terminal", "sync", "sync(): ID!"),
        (
            "Query",
            "git",
            'git(url: String!, keepGitDir: Boolean = true, sshKnownHosts: String = "", '
            'sshAuthSocket: ID, httpAuthUsername: String = "", httpAuthToken: ID, '
            "httpAuthHeader: ID, experimentalServiceHost: ID): GitRepository!",
        ),
        ("Container", "from", "from(address: String!, registryService: ID): Container!"),
        (
            "Container",
            "publish",
            "publish(address: String!, platformVariants: [ID!] = [], forcedCompression: "
            "ImageLayerCompression, mediaTypes: ImageMediaTypes = OCIMediaTypes, "
            "registryService: ID): String!",
        ),
        (
            "Container",
            "up",
            "up(random: Boolean = false, ports: [PortForward!] = [], args: [String!] = [], "
            "useEntrypoint: Boolean = false, experimentalPrivilegedNesting: Boolean = false, "
            "insecureRootCapabilities: Boolean = false, expand: Boolean = false, noInit: "
            "Boolean = false): Void",
        ),
    ],
)
def test_fields_match_daggers(
    schema: GraphQLSchema, type_name: str, field: str, signature: str
) -> None:
    assert _signature(schema, type_name, field).replace("()", "") == signature.replace("()", "")


def test_object_arguments_are_ids_naming_their_type() -> None:
    sdl = load_sdl()
    assert 'source: ID! @expectedType(name: "Directory")' in sdl
    assert 'sync: ID! @expectedType(name: "Container")' in sdl
    assert "scalar ContainerID" not in sdl  # Dagger >= 0.21.1 has no per-type ID scalars


def test_enum_values_are_daggers(schema: GraphQLSchema) -> None:
    def values(name: str) -> list[str]:
        return list(schema.type_map[name].values)  # type: ignore[union-attr]

    assert values("CacheSharingMode") == ["SHARED", "PRIVATE", "LOCKED"]
    assert values("ReturnType") == ["SUCCESS", "FAILURE", "ANY"]
    assert values("NetworkProtocol") == ["TCP", "UDP"]
